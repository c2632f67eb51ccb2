//! Fleet mode against a real PostgreSQL on loopback: the shared state itself (`state`), and
//! two proxies sharing it (`proxies`).

mod state;
