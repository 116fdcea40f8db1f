// Runs the same fixed suite of statements against the server given by the
// environment and prints (as JSON) everything mysql2 returned, so a test can
// compare a direct connection with one through the router.
//
//   MYSQL_HOST MYSQL_PORT MYSQL_USER MYSQL_PASSWORD MYSQL_DATABASE TABLE
//   MYSQL_TLS=1|0 [MYSQL_COMPRESS=1: the compressed protocol]
import mysql from 'mysql2/promise';

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const table = env('TABLE');
const tls = env('MYSQL_TLS') === '1';

const conn = await mysql.createConnection({
  host: env('MYSQL_HOST'),
  port: Number(env('MYSQL_PORT')),
  user: env('MYSQL_USER'),
  password: env('MYSQL_PASSWORD'),
  database: env('MYSQL_DATABASE'),
  ssl: tls ? { rejectUnauthorized: false } : undefined,
  multipleStatements: true,
  dateStrings: true,
  supportBigNumbers: true,
  compress: process.env.MYSQL_COMPRESS === '1',
});
const out = {};
const fields = (fs) => (fs || []).map((f) => [f.name, f.columnType, f.characterSet, f.flags, f.decimals]);
try {
  out.encrypted = typeof conn.connection.stream.getCipher === 'function';
  const [rows1, f1] = await conn.query(
    "SELECT 1 AS one, 'x' AS s, NULL AS n, 1.5 AS d, CAST('2024-01-02 03:04:05' AS DATETIME) AS dt, REPEAT('y', 300) AS long_s",
  );
  out.text = { rows: rows1, fields: fields(f1) };
  await conn.query(`DROP TABLE IF EXISTS ${table}`);
  await conn.query(
    `CREATE TABLE ${table} (id INT PRIMARY KEY, v VARCHAR(20), b BLOB, f DOUBLE, dt DATETIME(3), big BIGINT UNSIGNED)`,
  );
  const inserted = [];
  for (let i = 1; i <= 50; i++) {
    const [ok] = await conn.execute(`INSERT INTO ${table} VALUES (?, ?, ?, ?, ?, ?)`, [
      i, `v${i}`, Buffer.from([i, 0, 255]), i / 4, `2024-05-06 07:08:09.${String(i).padStart(3, '0')}`,
      '18446744073709551615',
    ]);
    inserted.push(ok.affectedRows);
  }
  out.inserted = inserted;
  const [rows2, f2] = await conn.execute(`SELECT * FROM ${table} WHERE id > ? ORDER BY id`, [10]);
  out.binary = { rows: rows2.map((r) => ({ ...r, b: r.b.toString('hex') })), fields: fields(f2) };
  const [multi] = await conn.query('SELECT 1 AS a; SELECT 2 AS b, 3 AS c; DO 0');
  out.multi = multi;
  try {
    await conn.query(`SELECT * FROM ${table}_missing`);
  } catch (e) {
    out.error = { errno: e.errno, sqlState: e.sqlState, message: e.sqlMessage.replace(`${table}_missing`, 'T') };
  }
  try {
    await conn.execute('SELECT ? FROM nowhere_at_all', [1]);
  } catch (e) {
    out.prepareError = { errno: e.errno, sqlState: e.sqlState };
  }
  const [upd] = await conn.query(`UPDATE ${table} SET v = 'z' WHERE id <= 5`);
  out.update = { affectedRows: upd.affectedRows, changedRows: upd.changedRows, info: upd.info };
  await conn.query(`DROP TABLE ${table}`);
  process.stdout.write(JSON.stringify(out) + '\n');
} finally {
  await conn.end();
}
