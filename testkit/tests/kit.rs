//! The test kit against the real programs: mariadbd, pebble, curl, and its own binary.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use onebox_testkit::{
    ChildGuard, MariaDb, Pebble, Signal, TestCa, free_port, process_state, temp_dir, wait_until,
};

/// Whether process `pid` exists (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|state| state != 'Z')
}

#[test]
fn a_guarded_child_is_gone_after_drop_and_its_log_is_kept() {
    let dir = temp_dir("kit");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo started; exec sleep 600"]);
    let mut child = ChildGuard::spawn(cmd, dir.path().join("sleep.log")).unwrap();
    let pid = child.pid();
    child.wait_until(10, "the child's first line", || {
        std::fs::read_to_string(dir.path().join("sleep.log")).is_ok_and(|t| t.contains("started"))
    });
    assert!(child.running());
    drop(child);
    assert!(
        !alive(pid),
        "pid {pid} still runs after the guard was dropped"
    );
}

#[test]
fn a_group_leader_takes_its_children_along() {
    let dir = temp_dir("kit");
    let mut cmd = Command::new("sh");
    // A grandchild, and the leader waiting on it (as NSD's main process does).
    cmd.args(["-c", "sleep 600 & echo $! > grandchild; wait"]);
    cmd.current_dir(dir.path());
    let guard = ChildGuard::spawn_with(
        cmd,
        dir.path().join("group.log"),
        true,
        onebox_testkit::Stop::Term(Duration::from_secs(1)),
    )
    .unwrap();
    let file = dir.path().join("grandchild");
    wait_until(10, "the grandchild's pid", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.ends_with('\n'))
    });
    let grandchild: u32 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(grandchild));
    drop(guard);
    wait_until(5, "the grandchild to go", || !alive(grandchild));
}

#[test]
fn a_child_held_by_a_static_outlives_the_thread_that_started_it() {
    static HELD: OnceLock<std::sync::Mutex<ChildGuard>> = OnceLock::new();
    let dir = temp_dir("kit");
    let log = dir.path().join("static.log");
    std::thread::spawn(move || {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let _ = HELD.set(std::sync::Mutex::new(ChildGuard::spawn(cmd, log).unwrap()));
    })
    .join()
    .unwrap();
    // The parent-death signal follows the forking thread: that is the kit's spawner thread,
    // not the one above, which has ended.
    std::thread::sleep(Duration::from_millis(300));
    let mut held = HELD.get().unwrap().lock().unwrap();
    assert!(
        held.running(),
        "the child died with the thread that asked for it"
    );
    held.kill();
}

/// Run by `shared_servers_die_with_the_test_process` in a process of its own.
#[test]
#[ignore = "a helper: run in a child process by shared_servers_die_with_the_test_process"]
fn helper_start_the_shared_mariadb_and_exit() {
    let Some(out) = std::env::var_os("ONEBOX_TESTKIT_HELPER_OUT") else {
        return;
    };
    let db = MariaDb::shared();
    std::fs::write(out, format!("{} {}", db.pid().unwrap(), db.dir().display())).unwrap();
    // The test harness exits the process without dropping the static.
}

#[test]
fn shared_servers_die_with_the_test_process() {
    let dir = temp_dir("kit");
    let out = dir.path().join("shared");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_start_the_shared_mariadb_and_exit",
        ])
        .env("ONEBOX_TESTKIT_HELPER_OUT", &out)
        .env_remove(onebox_testkit::URL_VAR)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let (pid, server_dir) = text.split_once(' ').unwrap();
    let pid: u32 = pid.parse().unwrap();
    let server_dir = PathBuf::from(server_dir);
    wait_until(
        10,
        "the shared mariadbd to die with its test process",
        || !alive(pid),
    );
    wait_until(10, "the shared server's directory to be removed", || {
        !server_dir.exists()
    });
}

#[test]
fn mariadb_takes_queries_gives_each_test_a_database_and_survives_outages() {
    let mut server = MariaDb::start().unwrap();
    assert!(
        server
            .url()
            .starts_with(&format!("mysql://{}@localhost/?socket=", server.user()))
    );
    let db = server.database().unwrap();
    db.sql("CREATE TABLE t (n INT); INSERT INTO t VALUES (41), (1)")
        .unwrap();
    assert_eq!(db.sql("SELECT SUM(n) FROM t").unwrap().trim(), "42");
    assert!(db.url().contains(&format!("/{}?socket=", db.name())));

    // Crash and restart: the data is still there.
    let before = server.pid().unwrap();
    server.kill();
    assert!(!alive(before));
    assert!(db.sql("SELECT 1").is_err());
    server.resume().unwrap();
    assert_eq!(db.sql("SELECT SUM(n) FROM t").unwrap().trim(), "42");

    // Frozen: connections get no greeting; thawed: they do.
    server.freeze().unwrap();
    // freeze() returns only once every thread has stopped (kill alone leaves a window in which a
    // thread not yet stopped answers queries).
    assert!(
        server.frozen(),
        "freeze() returned before every thread stopped"
    );
    let socket = server.socket().to_path_buf();
    assert!(!greeting(&socket), "a frozen server greeted");
    server.thaw().unwrap();
    assert!(greeting(&socket));
    assert!(!server.frozen());

    server.restart().unwrap();
    assert_eq!(db.sql("SELECT COUNT(*) FROM t").unwrap().trim(), "2");

    // A dropped database is gone.
    let name = db.name().to_string();
    drop(db);
    let list = server.sql("SHOW DATABASES").unwrap();
    assert!(!list.lines().any(|l| l == name), "{list}");

    let (pid, dir) = (server.pid().unwrap(), server.dir().to_path_buf());
    drop(server);
    assert!(!alive(pid));
    assert!(!dir.exists());
}

/// Whether the server on `socket` sends its greeting within a second.
fn greeting(socket: &Path) -> bool {
    use std::io::Read as _;
    let mut conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut head = [0u8; 5];
    conn.read_exact(&mut head).is_ok()
}

#[test]
fn pebble_answers_its_directory_over_its_own_tls_and_serves_its_roots() {
    let pebble = Pebble::start(free_port(), free_port()).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(pebble.directory_ca())
        .arg(pebble.directory_url())
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("newAccount"), "{body}");
    let roots = pebble.roots_pem().unwrap();
    assert!(roots.starts_with("-----BEGIN CERTIFICATE-----"), "{roots}");
    // Real validation: never the always-valid shortcut.
    let environ = std::fs::read(format!("/proc/{}/environ", pebble_pid(&pebble))).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(environ.contains("PEBBLE_VA_NOSLEEP=1"));
    assert!(!environ.contains("PEBBLE_VA_ALWAYS_VALID"));
}

/// pebble's pid, from the listening socket's owner.
fn pebble_pid(pebble: &Pebble) -> u32 {
    let out = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{}", pebble.ports().directory)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("pid=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {text}"))
}

#[test]
fn a_leaf_verifies_against_its_ca_only_and_for_its_names_only() {
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    let ca = TestCa::new("kit test CA").unwrap();
    let leaf = ca.leaf(&["www.foobar.com", "127.0.0.1"]).unwrap();
    // Through PEM, as a server and a client would read them.
    let root = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
    let cert = CertificateDer::from_pem_slice(leaf.cert_pem().as_bytes()).unwrap();
    let verify = |root: CertificateDer<'static>, name: &str| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()
        .unwrap();
        verifier.verify_server_cert(
            &cert,
            &[],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
    };
    verify(root.clone(), "www.foobar.com").unwrap();
    verify(root.clone(), "127.0.0.1").unwrap();
    assert!(verify(root, "other.example").is_err());
    let stranger = TestCa::new("another CA").unwrap();
    assert!(verify(stranger.cert_der(), "www.foobar.com").is_err());
    assert!(leaf.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[test]
fn the_binary_runs_a_command_with_a_mariadb_and_passes_its_status_on() {
    let out = Command::new(env!("CARGO_BIN_EXE_onebox-testkit"))
        .args(["with-mariadb", "sh", "-c"])
        .arg(
            "sock=${ONEBOX_TEST_MYSQL_URL#*socket=}; echo \"$sock\"; \
             mariadb --no-defaults --socket=\"$sock\" -N -e 'SELECT 6*7' && exit 3",
        )
        .env_remove(onebox_testkit::URL_VAR)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let socket = PathBuf::from(lines.next().unwrap());
    assert_eq!(lines.next(), Some("42"));
    assert!(
        !socket.parent().unwrap().exists(),
        "{} was left behind",
        socket.display()
    );
}

#[test]
fn the_binary_serves_mariadb_until_sigterm_and_keeps_the_data() {
    let dir = temp_dir("kit");
    let db_dir = dir.path().join("db");
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_onebox-testkit"))
            .arg("mariadb")
            .arg(&db_dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
                .to_string()
        };
        assert!(line.starts_with("ready "), "{line}");
        let pid: u32 = field("pid").parse().unwrap();
        (child, field("socket"), pid)
    };
    let (mut child, socket, mariadbd) = start();
    assert_eq!(socket, db_dir.join("mysqld.sock").to_str().unwrap());
    let sql = |q: &str| {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                &format!("--socket={socket}"),
                "-N",
                "-e",
                q,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    sql("CREATE DATABASE kept");
    onebox_testkit::signal(child.id(), Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(!alive(mariadbd));
    assert!(!Path::new(&socket).exists());
    // A second start reuses the datadir.
    let (mut child, _, mariadbd) = start();
    assert_eq!(sql("SHOW DATABASES LIKE 'kept'"), "kept");
    // A killed kit binary takes its mariadbd along (the parent-death signal).
    onebox_testkit::signal(child.id(), Signal::KILL).unwrap();
    child.wait().unwrap();
    wait_until(10, "mariadbd to die with the kit binary", || {
        !alive(mariadbd)
    });
}
