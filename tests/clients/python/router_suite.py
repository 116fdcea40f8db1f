"""Runs a fixed suite with PyMySQL against the server given by the
environment and prints (as one JSON line) everything it returned, so a test
can compare a direct connection with one through the router.

  MYSQL_HOST MYSQL_PORT MYSQL_USER MYSQL_PASSWORD MYSQL_DATABASE TABLE MYSQL_TLS=1|0
"""
import json
import os
import ssl

import pymysql
import pymysql.cursors

env = os.environ
table = env["TABLE"]
ctx = None
if env["MYSQL_TLS"] == "1":
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

conn = pymysql.connect(
    host=env["MYSQL_HOST"],
    port=int(env["MYSQL_PORT"]),
    user=env["MYSQL_USER"],
    password=env["MYSQL_PASSWORD"],
    database=env["MYSQL_DATABASE"],
    ssl=ctx,
    ssl_disabled=ctx is None,
    client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
    autocommit=True,
)
out = {}


def fields(desc):
    return [list(d) for d in (desc or [])]


try:
    out["encrypted"] = isinstance(conn._sock, ssl.SSLSocket)
    out["server_version"] = conn.get_server_info()
    with conn.cursor() as c:
        c.execute("SELECT 1 AS one, 'x' AS s, NULL AS n, 1.5 AS d, REPEAT('y', 300) AS long_s")
        out["text"] = {"rows": [list(map(str, r)) for r in c.fetchall()], "fields": fields(c.description)}
        c.execute(f"DROP TABLE IF EXISTS {table}")
        c.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR(20), b BLOB, f DOUBLE)")
        c.executemany(
            f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",
            [(i, f"v{i}", bytes([i, 0, 255]), i / 4) for i in range(1, 51)],
        )
        out["inserted"] = c.rowcount
        c.execute(f"SELECT * FROM {table} WHERE id > %s ORDER BY id", (10,))
        out["rows"] = [[r[0], r[1], r[2].hex(), r[3]] for r in c.fetchall()]
        c.execute("SELECT 1 AS a; SELECT 2 AS b, 3 AS c")
        multi = [c.fetchall()]
        while c.nextset():
            multi.append(c.fetchall())
        out["multi"] = [[list(r) for r in rs] for rs in multi]
        try:
            c.execute(f"SELECT * FROM {table}_missing")
        except pymysql.err.ProgrammingError as e:
            out["error"] = [e.args[0], e.args[1].replace(f"{table}_missing", "T")]
        c.execute(f"UPDATE {table} SET v = 'z' WHERE id <= 5")
        out["update"] = c.rowcount
        conn.ping(reconnect=False)
        conn.select_db(env["MYSQL_DATABASE"])
        c.execute(f"DROP TABLE {table}")
    # A streaming (unbuffered) cursor over a larger result.
    with conn.cursor(pymysql.cursors.SSCursor) as c:
        c.execute("SET SESSION cte_max_recursion_depth = 100000")
        c.execute("SELECT SEQ FROM (WITH RECURSIVE s(SEQ) AS (SELECT 1 UNION ALL SELECT SEQ + 1 FROM s WHERE SEQ < 50000) SELECT SEQ FROM s) t")
        total = 0
        for (n,) in c:
            total += n
        out["streamed_sum"] = total
    print(json.dumps(out))
finally:
    conn.close()
