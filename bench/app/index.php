<?php
// The home page of onebox-app, written the classic way: PHP-FPM + mysqli against the same
// MariaDB table, the same query (settings, then the 20 newest published posts) and the same
// HTML as app/templates/home.html. Used by bench/app/run only.
declare(strict_types=1);

const PER_PAGE = 20;
const EXCERPT_CHARS = 280;

function h(string $s): string { return htmlspecialchars($s, ENT_QUOTES | ENT_HTML5, 'UTF-8'); }

function excerpt(string $body): string {
    // The first EXCERPT_CHARS characters (not bytes) and an ellipsis, when the body is longer.
    if (preg_match('/^(.{' . EXCERPT_CHARS . '})./su', $body, $m)) { return rtrim($m[1]) . '…'; }
    return $body;
}

mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
try {
    $db = new mysqli('localhost', getenv('BENCH_DB_USER') ?: 'root', '', getenv('BENCH_DB_NAME') ?: 'bench', 0,
                     getenv('BENCH_DB_SOCKET') ?: '/run/mysqld/mysqld.sock');
    $db->set_charset('utf8mb4');
    $db->query("SET time_zone = '+00:00'");
    $page = isset($_GET['page']) ? (int)$_GET['page'] : 1;
    if ($page < 1) { $page = 1; }
    $site = $db->query('SELECT title, description FROM settings WHERE id = 1')->fetch_assoc()
        ?? ['title' => '', 'description' => ''];
    $stmt = $db->prepare("SELECT id, title, body, published, DATE_FORMAT(created_at, '%Y-%m-%dT%H:%i:%sZ') AS created_at
        FROM posts WHERE published = TRUE ORDER BY id DESC LIMIT ? OFFSET ?");
    $limit = PER_PAGE + 1;
    $offset = ($page - 1) * PER_PAGE;
    $stmt->bind_param('ii', $limit, $offset);
    $stmt->execute();
    $rows = $stmt->get_result()->fetch_all(MYSQLI_ASSOC);
} catch (mysqli_sql_exception $e) {
    http_response_code(503);
    echo "The site's database is unavailable right now.";
    exit;
}
$more = count($rows) > PER_PAGE;
$posts = array_slice($rows, 0, PER_PAGE);
header('Content-Type: text/html; charset=utf-8');
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title><?= h($site['title']) ?></title>
<style>
body{max-width:44rem;margin:2rem auto;padding:0 1rem;font:1.05rem/1.6 system-ui,sans-serif;color:#222}
a{color:#0645ad}header h1 a{color:inherit;text-decoration:none}.meta{color:#666;font-size:.9rem}
nav.pages{display:flex;justify-content:space-between;margin:2rem 0}article{margin:2rem 0}
pre{overflow:auto;background:#f4f4f4;padding:.5rem}img{max-width:100%}
form.inline{display:inline}label{display:block;margin:.6rem 0 .2rem}
input[type=text],input[type=password],textarea{width:100%;box-sizing:border-box;font:inherit}
.error{color:#a00;font-weight:bold}table{border-collapse:collapse;width:100%}td,th{padding:.3rem;border-bottom:1px solid #ddd;text-align:left}
</style>
</head>
<body>
<header><h1><a href="/"><?= h($site['title']) ?></a></h1><p><?= h($site['description']) ?></p></header>
<main>
<?php if (!$posts): ?>
<p>No posts yet.</p>
<?php endif; foreach ($posts as $post): ?>
<article>
<h2><a href="/posts/<?= (int)$post['id'] ?>"><?= h($post['title']) ?></a></h2>
<p class="meta"><time datetime="<?= h($post['created_at']) ?>"><?= h($post['created_at']) ?></time></p>
<p><?= h(excerpt($post['body'])) ?></p>
</article>
<?php endforeach; ?>
<nav class="pages">
<span><?php if ($page > 1): ?><a href="/?page=<?= $page - 1 ?>">&larr; Newer posts</a><?php endif; ?></span>
<span><?php if ($more): ?><a href="/?page=<?= $page + 1 ?>">Older posts &rarr;</a><?php endif; ?></span>
</nav>
</main>
</body>
</html>
