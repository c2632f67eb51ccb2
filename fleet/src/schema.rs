//! The fleet's tables, applied in order and recorded by version.
//!
//! Every proxy runs [`migrate`] at start. A transaction-scoped advisory lock makes concurrent
//! starts take turns, the migrations a database lacks commit together with their version rows, and a database at a newer
//! version than this build knows is refused rather than written with old assumptions.

use tokio_postgres::{Config, NoTls};
use tracing::{debug, info};

use crate::{FleetError, pool, within};

/// Taken by every migrating proxy (an arbitrary constant: "claw" in ASCII).
const LOCK: i64 = 0x636c_6177;

/// The migrations, in order; version = index + 1. Never edit one that has shipped: add another.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4];

/// The receipt index: one row per receipt of every proxy's log, copied by each proxy once the
/// receipt is durable, for `clawverify query --state`. Rows point at receipts; they prove nothing.
const V4: &str = r#"
CREATE TABLE claw_receipts (
    log        text    NOT NULL,  -- origin clawproxy/<proxy id>[/<instance>]
    seq        bigint  NOT NULL,
    id         text    NOT NULL,
    ts_ms      bigint  NOT NULL,
    kind       text    NOT NULL,
    job        text    NOT NULL,
    op         text,
    vault      text,
    vault_name text,
    item       text,
    allow      boolean,
    rule       text,
    status     int,
    PRIMARY KEY (log, seq)
);
CREATE INDEX claw_receipts_job ON claw_receipts (job, ts_ms);
CREATE INDEX claw_receipts_item ON claw_receipts (item, ts_ms) WHERE item IS NOT NULL;
CREATE INDEX claw_receipts_ts ON claw_receipts (ts_ms);
"#;

/// Requests held for approval and the decisions on them, so an approver can decide a request
/// whichever proxy holds it. The first decision stands: it is only ever written over NULL.
const V3: &str = r#"
CREATE TABLE claw_approvals (
    id         text    PRIMARY KEY,
    request    text    NOT NULL,              -- the held request, JSON
    expires_ms bigint  NOT NULL,
    held       boolean NOT NULL DEFAULT true, -- false once its proxy let go of it
    decision   text,                          -- the decision that stands, JSON
    since      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claw_approvals_pending ON claw_approvals (expires_ms) WHERE held AND decision IS NULL;
"#;

/// Which logs served each job: a proxy adds its log before it writes the job's first receipt,
/// and the `job_close` it writes at the end lists them all.
const V2: &str = r#"
CREATE TABLE claw_job_logs (
    job   text        NOT NULL,
    log   text        NOT NULL,  -- origin clawproxy/<proxy id>/<instance>
    since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, log)
);
"#;

/// Revocations, the sequence that orders them, and token-bucket budgets.
const V1: &str = r#"
-- Every revocation takes the next number from this one row, inside its own statement, so
-- numbers are handed out in commit order and a reader that has seen n has seen all below n.
CREATE TABLE claw_revocation_seq (only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
                                  n bigint NOT NULL);
INSERT INTO claw_revocation_seq (n) VALUES (0);

CREATE TABLE claw_revocations (
    kind        text   NOT NULL CHECK (kind IN ('jti', 'job')),
    subject     text   NOT NULL,
    seq         bigint NOT NULL UNIQUE,
    reason      text   NOT NULL,
    revoked_at  bigint NOT NULL,  -- seconds since the epoch
    prune_after bigint NOT NULL,  -- no token it could match is valid after this
    PRIMARY KEY (kind, subject)
);

-- One row per budget (job and class). Tokens and rates per bucket, in the same order.
CREATE TABLE claw_budgets (
    key      text      PRIMARY KEY,
    caps     float8[]  NOT NULL,
    rates    float8[]  NOT NULL,  -- tokens per second
    tokens   float8[]  NOT NULL,
    refilled float8    NOT NULL,  -- the database's clock, seconds since the epoch
    used     timestamptz NOT NULL DEFAULT now()
);

-- Takes one token from every bucket of a budget, or none: returns 0 when it took them, else
-- the seconds until every bucket has one. The row lock makes concurrent takers queue, so N
-- tokens are spent exactly once across every proxy. The clock is the database's: proxies'
-- clocks may disagree, the server's is one.
CREATE FUNCTION claw_take(p_key text, p_caps float8[], p_rates float8[]) RETURNS float8
LANGUAGE plpgsql AS $$
DECLARE
    now_s float8 := extract(epoch FROM clock_timestamp());
    b claw_budgets%ROWTYPE;
    wait float8 := 0;
    n int := coalesce(array_length(p_caps, 1), 0);
BEGIN
    INSERT INTO claw_budgets (key, caps, rates, tokens, refilled)
        VALUES (p_key, p_caps, p_rates, p_caps, now_s)
        ON CONFLICT (key) DO NOTHING;
    SELECT * INTO b FROM claw_budgets WHERE key = p_key FOR UPDATE;
    IF b.caps IS DISTINCT FROM p_caps OR b.rates IS DISTINCT FROM p_rates THEN
        -- A new contract version for the job: it starts from its full budget.
        b.tokens := p_caps;
        b.refilled := now_s;
    END IF;
    FOR i IN 1 .. n LOOP
        b.tokens[i] := least(p_caps[i], b.tokens[i] + greatest(now_s - b.refilled, 0) * p_rates[i]);
        IF b.tokens[i] < 1 THEN
            wait := greatest(wait, (1 - b.tokens[i]) / p_rates[i]);
        END IF;
    END LOOP;
    IF wait = 0 THEN
        FOR i IN 1 .. n LOOP
            b.tokens[i] := b.tokens[i] - 1;
        END LOOP;
    END IF;
    UPDATE claw_budgets
        SET caps = p_caps, rates = p_rates, tokens = b.tokens, refilled = greatest(now_s, b.refilled), used = now()
        WHERE key = p_key;
    RETURN wait;
END
$$;
"#;

/// Applies the migrations this database lacks, in one transaction.
pub async fn migrate(config: &Config) -> Result<(), FleetError> {
    let (mut client, connection) = within(config.connect(NoTls)).await?;
    let task = tokio::spawn(connection);
    let result = apply(&mut client, config).await;
    drop(client);
    let _ = task.await;
    result
}

async fn apply(client: &mut tokio_postgres::Client, config: &Config) -> Result<(), FleetError> {
    let tx = within(client.transaction()).await?;
    // Under the lock even the first CREATE: two concurrent `IF NOT EXISTS` can still collide.
    within(tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])).await?;
    within(tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS claw_schema (version int PRIMARY KEY, \
         applied_at timestamptz NOT NULL DEFAULT now())",
    ))
    .await?;
    let row =
        within(tx.query_one("SELECT coalesce(max(version), 0) FROM claw_schema", &[])).await?;
    let current: i32 = row.get(0);
    let known = i32::try_from(MIGRATIONS.len()).expect("fewer than 2^31 migrations");
    if current > known {
        return Err(FleetError::Schema(format!(
            "{} is at version {current}, this build knows {known}: upgrade this proxy",
            pool::server(config)
        )));
    }
    for (version, sql) in (1..).zip(MIGRATIONS).skip(current as usize) {
        within(tx.batch_execute(sql)).await?;
        within(tx.execute("INSERT INTO claw_schema (version) VALUES ($1)", &[&version])).await?;
        info!(version, "fleet schema migrated");
    }
    within(tx.commit()).await?;
    debug!(version = known, "fleet schema current");
    Ok(())
}
