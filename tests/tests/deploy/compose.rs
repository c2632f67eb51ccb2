//! `docker-compose.yml`, the `Dockerfile` and `deploy/`: their structure, and their command
//! lines run here with the workspace's binaries.

use std::collections::BTreeSet;
use std::process::Command;

use connect_sim::demo::{DEMO_DB_ITEM_ID, DEMO_LOGIN_ITEM_ID, DEMO_VAULT_ID};

use super::files::{self, AGENT, CONFIG, Compose, DATA, Paths};
use super::support;

/// Keys of the compose specification this file may use (a misspelt key is an error here,
/// where docker compose is not installed to say so).
const TOP_LEVEL: &[&str] = &[
    "name", "services", "networks", "volumes", "secrets", "configs",
];
const SERVICE_KEYS: &[&str] = &[
    "build",
    "image",
    "command",
    "entrypoint",
    "environment",
    "env_file",
    "volumes",
    "networks",
    "network_mode",
    "depends_on",
    "healthcheck",
    "profiles",
    "restart",
    "user",
    "read_only",
    "cap_drop",
    "security_opt",
    "tmpfs",
    "ports",
    "expose",
    "secrets",
];

#[test]
fn the_compose_file_puts_the_agent_on_an_internal_network_with_only_the_proxy() {
    let compose = Compose::load();
    let top = compose.0.as_object().unwrap();
    for key in top.keys() {
        assert!(
            TOP_LEVEL.contains(&key.as_str()) || key.starts_with("x-"),
            "top-level key {key:?} is not in the compose specification"
        );
    }
    for (name, service) in compose.services() {
        for key in service.as_object().expect("a service mapping").keys() {
            assert!(
                SERVICE_KEYS.contains(&key.as_str()),
                "services.{name}.{key} is not a key this file may use ({SERVICE_KEYS:?})"
            );
        }
    }
    for name in ["clawproxy", "connect", "agent", "init"] {
        compose.service(name);
    }
    // Every variable has a default: `docker compose up` needs nothing set.
    for name in compose.services().keys() {
        compose.environment(name);
        compose.volumes(name);
    }

    // The agent: only on the sandbox network, nothing published, no other way to the network.
    let agent = compose.service("agent");
    assert_eq!(
        compose.networks("agent"),
        ["sandbox"],
        "the agent's networks"
    );
    for key in ["network_mode", "ports", "expose"] {
        assert!(!agent.contains_key(key), "the agent must not have {key}");
    }
    let sandbox = &compose.0["networks"]["sandbox"];
    assert_eq!(
        sandbox["internal"],
        serde_json::Value::Bool(true),
        "the sandbox network is internal: {sandbox}"
    );
    let on_sandbox: BTreeSet<&str> = compose
        .services()
        .keys()
        .filter(|name| compose.networks(name).iter().any(|n| n == "sandbox"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        on_sandbox,
        BTreeSet::from(["agent", "clawproxy"]),
        "the proxy is the agent's only peer"
    );
    // The proxy: on both; its egress network is not internal.
    assert_eq!(compose.networks("clawproxy"), ["sandbox", "egress"]);
    let egress = &compose.0["networks"]["egress"];
    assert!(
        egress.get("internal").is_none_or(|v| v == false),
        "{egress}"
    );
    // Connect is reachable from the proxy's side only.
    assert_eq!(compose.networks("connect"), ["egress"]);
    // init needs no network at all.
    assert_eq!(
        compose.service("init")["network_mode"],
        "none",
        "init runs without a network"
    );
    let declared: BTreeSet<&str> = compose.0["networks"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for name in compose.services().keys() {
        for network in compose.networks(name) {
            assert!(
                declared.contains(network.as_str()),
                "{name}: undeclared network {network}"
            );
        }
    }

    // Order: init completes, the proxy starts, the agent waits for a healthy proxy.
    assert_eq!(
        compose.service("clawproxy")["depends_on"]["init"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(
        compose.service("agent")["depends_on"]["clawproxy"]["condition"],
        "service_healthy"
    );

    // The real Connect server is a profile: the API and sync images, the credentials file.
    for name in ["connect-api", "connect-sync"] {
        let service = compose.service(name);
        assert_eq!(
            service["profiles"],
            serde_json::json!(["real-connect"]),
            "{name}"
        );
        let image = service["image"].as_str().unwrap();
        assert!(
            image.starts_with(&format!("1password/{name}:")),
            "{name}: {image}"
        );
        let volumes = compose.volumes(name);
        assert!(
            volumes.iter().any(
                |(source, target)| source.ends_with("1password-credentials.json")
                    && target == "/home/opuser/.op/1password-credentials.json"
            ),
            "{name} mounts the credentials file: {volumes:?}"
        );
        assert_eq!(compose.networks(name), ["egress"], "{name}");
    }
    for name in ["clawproxy", "connect", "agent", "init"] {
        assert!(
            !compose.service(name).contains_key("profiles"),
            "{name} starts by default"
        );
    }

    // Volumes: declared, and where the paths the tests map say.
    let volumes = compose.0["volumes"].as_object().unwrap();
    for name in compose.services().keys() {
        for (source, _) in compose.volumes(name) {
            if !source.starts_with('.') && !source.starts_with('/') {
                assert!(volumes.contains_key(&source), "{name}: undeclared {source}");
            }
        }
    }
    let mounts = |name: &str| -> Vec<String> {
        compose
            .volumes(name)
            .into_iter()
            .map(|(_, target)| target)
            .collect()
    };
    assert!(mounts("clawproxy").contains(&DATA.to_owned()));
    assert!(mounts("clawproxy").contains(&CONFIG.to_owned()));
    assert!(mounts("init").contains(&DATA.to_owned()));
    assert!(mounts("init").contains(&AGENT.to_owned()));
    assert_eq!(
        compose.volumes("agent"),
        [("agent-creds".to_owned(), AGENT.to_owned())],
        "the agent mounts its credentials only (and read-only)"
    );
    let agent_volume = agent["volumes"][0].as_str().unwrap();
    assert!(agent_volume.ends_with(":ro"), "{agent_volume}");

    docker_compose_config();
}

/// `docker compose config -q` where docker compose is installed (the full specification).
fn docker_compose_config() {
    let root = files::root();
    let installed = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("docker compose is not installed: checked by the structure above only");
        return;
    }
    for profile in [None, Some("real-connect"), Some("fleet")] {
        let mut command = Command::new("docker");
        command.current_dir(&root).arg("compose");
        if let Some(profile) = profile {
            command.args(["--profile", profile]);
        }
        let out = command.args(["config", "-q"]).output().unwrap();
        assert!(
            out.status.success(),
            "docker compose config -q ({profile:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_fleet_profile_puts_two_proxies_on_one_state_behind_a_balancer() {
    let compose = Compose::load();
    let fleet = [
        "fleet-init",
        "postgres",
        "clawproxy-a",
        "clawproxy-b",
        "lb",
        "fleet-agent",
    ];
    for name in fleet {
        assert_eq!(
            compose.service(name)["profiles"],
            serde_json::json!(["fleet"]),
            "{name}"
        );
    }
    // The agent's only peer is the balancer; nothing on the fleet's networks leaves but the
    // proxies, through egress.
    assert_eq!(compose.networks("fleet-agent"), ["fleet-sandbox"]);
    for network in ["fleet-sandbox", "fleet"] {
        assert_eq!(
            compose.0["networks"][network]["internal"],
            serde_json::Value::Bool(true),
            "{network} is internal"
        );
    }
    let on = |network: &str| -> BTreeSet<String> {
        compose
            .services()
            .keys()
            .filter(|name| compose.networks(name).iter().any(|n| n == network))
            .cloned()
            .collect()
    };
    assert_eq!(
        on("fleet-sandbox"),
        BTreeSet::from(["fleet-agent".into(), "lb".into()])
    );
    for name in fleet {
        let leaves = compose.networks(name).iter().any(|n| n == "egress");
        assert_eq!(leaves, name.starts_with("clawproxy-"), "{name}");
    }
    // The agent's proxy address is the balancer, which spreads over both proxies.
    let addr = compose
        .environment("fleet-init")
        .into_iter()
        .find(|(k, _)| k == "CLAW_PROXY_ADDR")
        .unwrap()
        .1;
    assert_eq!(addr, "lb:3128");
    let haproxy = files::read("deploy/haproxy.cfg");
    assert!(
        compose
            .volumes("lb")
            .iter()
            .any(|(s, _)| s == "./deploy/haproxy.cfg")
    );
    // Each proxy: its own data dir and log, the seed read-only, the one shared state.
    let mut data_volumes = BTreeSet::new();
    let mut instances = BTreeSet::new();
    for name in ["clawproxy-a", "clawproxy-b"] {
        assert!(
            haproxy.contains(&format!("server {} {name}:3128", &name[10..])),
            "{name}"
        );
        assert_eq!(
            compose.command(name),
            ["sh", "/opt/clawproxy/fleet-proxy.sh"]
        );
        let env: std::collections::BTreeMap<_, _> = compose.environment(name).into_iter().collect();
        assert!(
            env["CLAW_STATE"].starts_with("postgres://")
                && env["CLAW_STATE"].contains("@postgres:5432/"),
            "{name}: {}",
            env["CLAW_STATE"]
        );
        // Its own log, named by its instance, in the receipts volume both share.
        assert!(instances.insert(env["CLAW_INSTANCE"].clone()), "{name}");
        let receipts = format!("{}/receipts", env["CLAW_HOME"]);
        assert!(
            compose
                .volumes(name)
                .iter()
                .any(|(s, t)| s == "fleet-receipts" && *t == receipts),
            "{name} writes its log into the shared fleet-receipts volume"
        );
        let volumes = compose.volumes(name);
        let data = volumes
            .iter()
            .find(|(_, t)| *t == env["CLAW_HOME"])
            .unwrap();
        assert!(
            data_volumes.insert(data.0.clone()),
            "{name} shares a data dir"
        );
        let seed = compose.service(name)["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .find(|v| v.contains(&env["CLAW_SEED"]))
            .unwrap();
        assert!(
            seed.starts_with("fleet-seed:") && seed.ends_with(":ro"),
            "{seed}"
        );
    }
    // The script runs the proxy command the tests run, with the state from CLAW_STATE.
    let script = files::read("deploy/fleet-proxy.sh");
    assert!(
        script.contains("exec clawproxy run --data-dir \"$CLAW_HOME\""),
        "{script}"
    );
    let flags = files::help_flags("clawproxy", Some("run"));
    for flag in ["--state", "--instance"] {
        assert!(
            flags.contains(&flag.to_owned()),
            "clawproxy run takes {flag}"
        );
    }
}

#[test]
fn the_proxy_command_and_every_deploy_config_are_accepted_by_clawproxy() {
    let compose = Compose::load();
    let argv = compose.command("clawproxy");
    assert_eq!(argv[..2], ["clawproxy", "run"], "{argv:?}");
    files::assert_known_flags(&argv);
    let flag = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .map(|at| argv[at + 1].clone())
    };
    assert_eq!(flag("--data-dir").as_deref(), Some(DATA), "{argv:?}");
    assert_eq!(flag("--config").as_deref(), Some(CONFIG), "{argv:?}");

    // The file the compose file mounts (by the variable's default) and every other config in
    // deploy/ (the real-connect one): `clawproxy check-config` accepts them.
    let (mounted, table) = files::compose_config(&compose);
    let mut configs: Vec<_> = std::fs::read_dir(files::root().join("deploy"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    configs.sort();
    assert!(configs.contains(&mounted), "{mounted:?} in {configs:?}");
    for config in &configs {
        let out = support::run_ok(
            "clawproxy",
            &["check-config", "--config", config.to_str().unwrap()],
        );
        assert!(out.contains(": ok"), "{out}");
        let table: toml::Table = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
        // Its Connect upstream is a service of the compose file, on the proxy's side.
        let url = table["upstream"][0]["url"].as_str().unwrap();
        let host = url.trim_start_matches("http://").split(':').next().unwrap();
        assert!(
            compose.services().contains_key(host),
            "{}: {url} is not a compose service",
            config.display()
        );
        assert!(
            compose.networks(host).iter().any(|n| n == "egress"),
            "{host} is where the proxy reaches it"
        );
        assert_eq!(
            table["upstream"][0]["token_env"].as_str(),
            Some("OP_CONNECT_TOKEN"),
            "the token the compose file gives the proxy"
        );
    }
    assert!(
        compose
            .environment("clawproxy")
            .iter()
            .any(|(k, _)| k == "OP_CONNECT_TOKEN")
    );
    // connect-sim listens where the default config sends requests.
    let url = table["upstream"][0]["url"].as_str().unwrap();
    let connect = compose.command("connect");
    let listen = &connect[connect.iter().position(|a| a == "--listen").unwrap() + 1];
    assert!(
        url.ends_with(&format!(":{}", listen.rsplit(':').next().unwrap())),
        "{url} vs connect-sim --listen {listen}"
    );
    files::assert_known_flags(&connect);
    // Agents reach the proxy where it listens; the admin port is the HEALTHCHECK's default.
    let port = table["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    let proxy_addr = compose
        .environment("init")
        .into_iter()
        .find(|(k, _)| k == "CLAW_PROXY_ADDR")
        .expect("init gets CLAW_PROXY_ADDR")
        .1;
    assert_eq!(proxy_addr, format!("clawproxy:{port}"));
    let admin = table["admin"].as_str().unwrap();
    assert!(
        admin.starts_with("127.0.0.1:"),
        "admin stays inside the container: {admin}"
    );
    let healthcheck = files::healthcheck().join(" ");
    let admin_port = admin.rsplit(':').next().unwrap();
    assert!(
        healthcheck.contains(&format!("${{CLAW_ADMIN_PORT:-{admin_port}}}")),
        "{healthcheck}"
    );
}

#[test]
fn the_dockerfile_builds_every_binary_and_runs_as_non_root() {
    let stages = files::dockerfile();
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["build", "agent", "runtime"]);
    let stage = |name: &str| stages.iter().find(|s| s.name == name).unwrap();

    let build = stage("build");
    assert!(build.base.starts_with("rust:"), "{}", build.base);
    let cargo = build
        .all("RUN")
        .find(|r| r.contains("cargo build"))
        .expect("the build stage runs cargo build");
    assert!(cargo.contains("cargo build --release --locked"), "{cargo}");
    for bin in [
        "clawproxy",
        "clawcontrols",
        "clawscope",
        "clawverify",
        "connect-sim",
    ] {
        assert!(cargo.contains(&format!("--bin {bin}")), "{bin}: {cargo}");
        assert!(
            cargo.contains(&format!("target/release/{bin}")),
            "{bin}: {cargo}"
        );
    }

    // The runtime stage is the last one (what `docker build` makes by default): Debian slim,
    // a non-root numeric user, the data dir a volume, the proxy and admin ports exposed.
    let runtime = stages.last().unwrap();
    assert_eq!(runtime.name, "runtime");
    assert!(runtime.base.starts_with("debian:") && runtime.base.ends_with("-slim"));
    for stage in [runtime, stage("agent")] {
        let user = stage.user();
        let uid = user.split(':').next().unwrap();
        assert!(
            uid.parse::<u32>().is_ok_and(|uid| uid != 0),
            "stage {} runs as {user:?}: a numeric uid other than 0",
            stage.name
        );
        // Nothing runs as root after the USER line.
        let after = stage
            .instructions
            .iter()
            .rposition(|(i, _)| i == "USER")
            .unwrap();
        assert!(
            !stage.instructions[after..].iter().any(|(i, _)| i == "RUN"),
            "stage {} runs commands after dropping root",
            stage.name
        );
    }
    let exposed: Vec<&str> = runtime
        .all("EXPOSE")
        .flat_map(str::split_whitespace)
        .collect();
    assert!(
        exposed.contains(&"3128") && exposed.contains(&"9090"),
        "{exposed:?}"
    );
    assert!(
        runtime.all("VOLUME").any(|v| v.contains(DATA)),
        "the data dir is a volume"
    );
    assert!(runtime.all("ENV").any(|e| e == format!("CLAW_HOME={DATA}")));
    assert_eq!(files::healthcheck()[0], "bash");
    // The image's own command is a proxy command clawproxy accepts.
    let cmd: Vec<String> = serde_json::from_str(runtime.all("CMD").last().expect("a CMD"))
        .expect("CMD in exec (JSON) form");
    assert_eq!(cmd[..2], ["clawproxy", "run"], "{cmd:?}");
    files::assert_known_flags(&cmd);

    // What the images hold where the compose file and the tests expect it.
    let paths = Paths::new(std::path::Path::new("/nonexistent"));
    let mut copied = Vec::new();
    for stage in [runtime, stage("agent")] {
        for (sources, destination) in stage.copies() {
            assert_eq!(sources.len(), 1, "one source per COPY: {sources:?}");
            let destination = destination.trim_end_matches('/');
            let host = paths
                .pairs()
                .find(|(c, _)| *c == destination)
                .map(|(_, h)| h.to_path_buf())
                .unwrap_or_else(|| panic!("COPY to {destination}: a path the tests do not map"));
            assert_eq!(
                files::root().join(sources[0].trim_end_matches('/')),
                host,
                "COPY {} {destination}",
                sources[0]
            );
            copied.push(destination.to_owned());
        }
    }
    for container in [
        "/opt/clawproxy/init.sh",
        "/opt/clawproxy/fleet-proxy.sh",
        "/opt/clawproxy/policies",
        "/opt/agents",
    ] {
        assert!(copied.iter().any(|c| c == container), "{container}");
    }

    // The compose services build these stages.
    let compose = Compose::load();
    for (service, target) in [
        ("init", "runtime"),
        ("clawproxy", "runtime"),
        ("connect", "runtime"),
        ("agent", "agent"),
    ] {
        assert_eq!(
            compose.service(service)["build"]["target"],
            target,
            "{service}"
        );
        assert_eq!(
            compose.service(service)["build"]["context"],
            ".",
            "{service}"
        );
    }

    let ignored = files::read(".dockerignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "target/"),
        "the build context leaves target/ out"
    );
}

/// The init service's script and the proxy's command line, run here as the compose file says:
/// the data dir is made once and kept, the agent's proxy settings carry a job token the proxy
/// takes, and the image's HEALTHCHECK passes against the running proxy and fails without it.
#[test]
fn the_init_script_and_the_proxy_command_run_as_in_the_compose_file() {
    let compose = Compose::load();
    let work = tempfile::tempdir().unwrap();
    let paths = Paths::new(work.path());
    let placeholder = "clawproxy:3128";

    let out = files::run_init(&compose, &paths, placeholder);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("init: contract blake3:"), "{said}");
    let data = paths.host(DATA);
    let proxy_key = std::fs::read(data.join("keys/proxy.pem")).unwrap();
    // Again: the data dir keeps its keys, the contract stays active, a fresh token is minted.
    let first_env = files::agent_env(&paths);
    files::run_init(&compose, &paths, placeholder);
    assert_eq!(
        std::fs::read(data.join("keys/proxy.pem")).unwrap(),
        proxy_key,
        "a second run keeps the data dir's keys"
    );
    let env = files::agent_env(&paths);
    assert_ne!(env, first_env, "a second run mints a fresh token");
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
    );
    let url = &env[0].1;
    assert!(env.iter().all(|(_, v)| v == url));
    let job = compose
        .environment("init")
        .into_iter()
        .find(|(k, _)| k == "CLAW_JOB")
        .unwrap()
        .1;
    let credentials = url
        .strip_prefix(&format!("http://{job}:"))
        .and_then(|rest| rest.strip_suffix(&format!("@{placeholder}")))
        .unwrap_or_else(|| panic!("agent.env: {url}"));
    let token = credentials.to_owned();
    assert!(
        std::fs::read(paths.host(AGENT).join("ca.pem"))
            .unwrap()
            .starts_with(b"-----BEGIN CERTIFICATE-----")
    );

    let (_sim, sim) = files::start_connect(&compose, work.path());
    files::write_config(&compose, &paths, "127.0.0.1:0", "127.0.0.1:0", sim);
    let (mut proxy, listen, admin) = files::start_proxy(&compose, &paths, work.path());

    // The agent's token reads the DATABASE item and is refused the LOGIN item.
    let read = |item: &str| {
        let request = String::from_utf8(support::read_db_item(&job, &token, true))
            .unwrap()
            .replace(DEMO_DB_ITEM_ID, item);
        support::send(listen, request.as_bytes()).expect("an answer from the proxy")
    };
    let allowed = read(DEMO_DB_ITEM_ID);
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert_eq!(allowed.json()["vault"]["id"], DEMO_VAULT_ID);
    let denied = read(DEMO_LOGIN_ITEM_ID);
    assert_eq!(denied.status, 403, "{}", denied.text());

    let healthcheck = files::healthcheck();
    let check = |port: u16| {
        Command::new(&healthcheck[0])
            .args(&healthcheck[1..])
            .env("CLAW_ADMIN_PORT", port.to_string())
            .output()
            .unwrap()
            .status
    };
    assert!(
        check(admin.port()).success(),
        "HEALTHCHECK against the proxy"
    );
    let status = proxy.terminate();
    assert!(status.success(), "{status}\n{}", proxy.stderr_text());
    assert!(
        !check(admin.port()).success(),
        "HEALTHCHECK must fail when the proxy is gone"
    );
}
