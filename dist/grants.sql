-- The MySQL accounts Causeway needs, with exactly the privileges it uses.
-- Run once on the primary as an account with CREATE USER and GRANT OPTION
-- (e.g. `mysql -u root < grants.sql`); the accounts reach the replicas by
-- replication. Each CREATE USER prints the password MySQL generated for it:
-- put it in the file named beside it (mode 0640, group causeway).
-- Narrow '%' to the hosts the programs run on.

-- The reader beside each mysqld registers as a replica and dumps the binlog
-- (COM_REGISTER_SLAVE, COM_BINLOG_DUMP_GTID: REPLICATION SLAVE). Its other
-- queries (@@server_uuid, @@global.gtid_executed,
-- WAIT_FOR_EXECUTED_GTID_SET, GTID_SUBTRACT) need no privilege.
-- Password: /etc/causeway/reader.password (reader-*.toml, password_file).
CREATE USER 'causeway_repl'@'%' IDENTIFIED WITH caching_sha2_password BY RANDOM PASSWORD;
GRANT REPLICATION SLAVE ON *.* TO 'causeway_repl'@'%';

-- The router's health monitor: SHOW REPLICA STATUS (REPLICATION CLIENT);
-- @@global.read_only, @@global.super_read_only and @@global.gtid_executed
-- need no privilege. With [failover] fence_super_read_only = true, also:
--   GRANT SYSTEM_VARIABLES_ADMIN ON *.* TO 'causeway_monitor'@'%';
-- Password: /etc/causeway/monitor.password ([monitor] password_file).
CREATE USER 'causeway_monitor'@'%' IDENTIFIED WITH caching_sha2_password BY RANDOM PASSWORD;
GRANT REPLICATION CLIENT ON *.* TO 'causeway_monitor'@'%';

-- The application. The router has no account of its own for clients: it
-- authenticates each client with the [[users]] entry of router.toml and
-- logs in to the servers as that same user, so every application user
-- exists in MySQL with the privileges the application needs, and its
-- password is in router.toml's password_file. KILL of the application's
-- own statements needs no privilege. An example:
-- Password: /etc/causeway/app.password ([[users]] password_file).
CREATE USER 'app'@'%' IDENTIFIED WITH caching_sha2_password BY RANDOM PASSWORD;
GRANT SELECT, INSERT, UPDATE, DELETE ON app.* TO 'app'@'%';
