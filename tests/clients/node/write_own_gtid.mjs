// Writes one row on the server given by the environment, with
// session_track_gtids=OWN_GTID, and prints (as JSON) the GTID that mysql2
// read from the OK packet of that write.
//
//   MYSQL_HOST MYSQL_PORT MYSQL_USER MYSQL_PASSWORD MYSQL_DATABASE ROW_ID
import mysql from 'mysql2/promise';

const env = (k) => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};

const conn = await mysql.createConnection({
  host: env('MYSQL_HOST'),
  port: Number(env('MYSQL_PORT')),
  user: env('MYSQL_USER'),
  password: env('MYSQL_PASSWORD'),
  database: env('MYSQL_DATABASE'),
  ssl: { rejectUnauthorized: false },
});
try {
  await conn.query('CREATE TABLE IF NOT EXISTS e2e_first (id VARCHAR(64) PRIMARY KEY, n INT)');
  await conn.query('SET SESSION session_track_gtids = OWN_GTID');
  const [ok] = await conn.query('INSERT INTO e2e_first (id, n) VALUES (?, 1)', [env('ROW_ID')]);
  // Wall-clock time the OK arrived, in ms since the epoch (µs precision).
  const okAt = performance.timeOrigin + performance.now();
  const gtids = ok.stateChanges ? ok.stateChanges.gtids : [];
  process.stdout.write(JSON.stringify({ gtids, affectedRows: ok.affectedRows, okAt }) + '\n');
} finally {
  await conn.end();
}
