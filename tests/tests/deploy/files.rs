//! What the deploy tests share: the deployment files read as their tools read them (the compose
//! file as YAML with compose's `${NAME:-default}` interpolation, the Dockerfile's stages and
//! instructions), the map from paths in the containers to paths on this machine, and the
//! compose services' own command lines run here as processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use super::support::{self, Proc};

/// The repository root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

pub(crate) fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `docker-compose.yml`, parsed as YAML.
pub(crate) struct Compose(pub(crate) Value);

impl Compose {
    pub(crate) fn load() -> Self {
        let value: Value = serde_norway::from_str(&read("docker-compose.yml"))
            .unwrap_or_else(|e| panic!("docker-compose.yml is not valid YAML: {e}"));
        assert!(value.is_object(), "docker-compose.yml is not a mapping");
        Self(value)
    }

    pub(crate) fn services(&self) -> &serde_json::Map<String, Value> {
        self.0["services"]
            .as_object()
            .expect("docker-compose.yml has a services mapping")
    }

    pub(crate) fn service(&self, name: &str) -> &serde_json::Map<String, Value> {
        self.services()
            .get(name)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
    }

    /// The service's `command`, which must be in exec form (a list of strings), interpolated.
    pub(crate) fn command(&self, name: &str) -> Vec<String> {
        let command = self.service(name).get("command").unwrap_or_else(|| {
            panic!("service {name} has no command (the image's default is not checked)")
        });
        strings(command, &format!("services.{name}.command")).collect()
    }

    /// The service's `environment` (map or `KEY=VALUE` list form), interpolated.
    pub(crate) fn environment(&self, name: &str) -> Vec<(String, String)> {
        match self.service(name).get("environment") {
            None => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => interpolate(s),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        other => panic!("services.{name}.environment.{k}: {other} is not a value"),
                    };
                    (k.clone(), value)
                })
                .collect(),
            Some(list) => strings(list, &format!("services.{name}.environment"))
                .map(|entry| {
                    let (k, v) = entry
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{entry:?} is not KEY=VALUE"));
                    (k.to_owned(), v.to_owned())
                })
                .collect(),
        }
    }

    /// The networks a service is attached to (list or map form).
    pub(crate) fn networks(&self, name: &str) -> Vec<String> {
        match self.service(name).get("networks") {
            None => Vec::new(),
            Some(Value::Object(map)) => map.keys().cloned().collect(),
            Some(list) => strings(list, &format!("services.{name}.networks")).collect(),
        }
    }

    /// The service's volumes in short syntax: (source, target).
    pub(crate) fn volumes(&self, name: &str) -> Vec<(String, String)> {
        match self.service(name).get("volumes") {
            None => Vec::new(),
            Some(list) => strings(list, &format!("services.{name}.volumes"))
                .map(|volume| {
                    let mut parts = volume.split(':');
                    let source = parts.next().unwrap_or_default().to_owned();
                    let target = parts
                        .next()
                        .unwrap_or_else(|| panic!("volume {volume:?} has no target"))
                        .to_owned();
                    (source, target)
                })
                .collect(),
        }
    }
}

fn strings<'a>(value: &'a Value, key: &'a str) -> impl Iterator<Item = String> + 'a {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not a list"))
        .iter()
        .map(move |v| {
            interpolate(
                v.as_str()
                    .unwrap_or_else(|| panic!("{key}: {v} is not a string")),
            )
        })
}

/// Compose's interpolation as `docker compose up` does it with nothing set in the
/// environment: `$$` is `$`, `${NAME:-default}` is `default`. A bare `$NAME` or a `${NAME}`
/// without a default fails: the file must work with no variable set.
pub(crate) fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let inner = rest
            .strip_prefix('{')
            .unwrap_or_else(|| panic!("{text:?}: write ${{NAME:-default}}, not a bare $NAME"));
        let end = inner
            .find('}')
            .unwrap_or_else(|| panic!("{text:?}: an unclosed ${{"));
        let (name, default) = inner[..end].split_once(":-").unwrap_or_else(|| {
            panic!("{text:?}: a variable without a default would have to be set for `docker compose up`")
        });
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{text:?}: {name:?} is not a variable name"
        );
        out.push_str(default);
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    out
}

/// One `FROM … [AS name]` stage of the Dockerfile.
#[derive(Debug)]
pub(crate) struct Stage {
    pub(crate) name: String,
    pub(crate) base: String,
    /// (INSTRUCTION in upper case, its arguments with continuations joined).
    pub(crate) instructions: Vec<(String, String)>,
}

impl Stage {
    pub(crate) fn all(&self, instruction: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |(i, _)| i == instruction)
            .map(|(_, args)| args.as_str())
    }

    /// `COPY src… dst` lines without `--from`: (sources, destination).
    pub(crate) fn copies(&self) -> Vec<(Vec<String>, String)> {
        self.all("COPY")
            .filter(|args| !args.starts_with("--from"))
            .map(|args| {
                let mut words: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
                let destination = words.pop().expect("COPY has a destination");
                (words, destination)
            })
            .collect()
    }

    /// The user the stage's processes run as: its last `USER`, or root without one.
    pub(crate) fn user(&self) -> String {
        self.all("USER").last().unwrap_or("root").trim().to_owned()
    }
}

/// The Dockerfile as Docker reads it: comment lines dropped, `\` continuations joined, one
/// stage per `FROM`.
pub(crate) fn dockerfile() -> Vec<Stage> {
    let text = read("Dockerfile");
    let mut stages: Vec<Stage> = Vec::new();
    let mut logical = String::new();
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && logical.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(trimmed);
        lines.push(std::mem::take(&mut logical));
    }
    assert!(logical.is_empty(), "the Dockerfile ends in a continuation");
    for line in lines {
        let (instruction, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let instruction = instruction.to_ascii_uppercase();
        let args = args.trim().to_owned();
        if instruction == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                [_] => String::new(),
                _ => panic!("FROM {args}: expected `FROM image [AS name]`"),
            };
            stages.push(Stage {
                name,
                base: words[0].to_owned(),
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push((instruction, args));
        } else {
            assert_eq!(
                instruction, "ARG",
                "only ARG may come before the first FROM"
            );
        }
    }
    stages
}

/// Paths inside the containers and where the tests keep the same things on this machine.
pub(crate) struct Paths {
    /// (container path, host path), longest container path first.
    pairs: Vec<(String, PathBuf)>,
}

/// Where the compose file mounts the proxy's data dir, the agent's share and the config.
pub(crate) const DATA: &str = "/var/lib/claw";
pub(crate) const AGENT: &str = "/var/lib/claw-agent";
pub(crate) const CONFIG: &str = "/etc/clawproxy/clawproxy.toml";

impl Paths {
    pub(crate) fn new(work: &Path) -> Self {
        let root = root();
        let mut pairs = vec![
            (DATA.to_owned(), work.join("data")),
            (AGENT.to_owned(), work.join("agent")),
            (CONFIG.to_owned(), work.join("clawproxy.toml")),
            // What the Dockerfile copies into the images (checked by the compose tests).
            (
                "/opt/clawproxy/init.sh".to_owned(),
                root.join("deploy/init.sh"),
            ),
            (
                "/opt/clawproxy/fleet-proxy.sh".to_owned(),
                root.join("deploy/fleet-proxy.sh"),
            ),
            (
                "/opt/clawproxy/policies".to_owned(),
                root.join("examples/policies"),
            ),
            ("/opt/agents".to_owned(), root.join("examples/agents")),
        ];
        pairs.sort_by_key(|(container, _)| std::cmp::Reverse(container.len()));
        Self { pairs }
    }

    pub(crate) fn host(&self, container: &str) -> &Path {
        &self
            .pairs
            .iter()
            .find(|(c, _)| c == container)
            .unwrap_or_else(|| panic!("no host path for {container}"))
            .1
    }

    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.pairs.iter().map(|(c, h)| (c.as_str(), h.as_path()))
    }

    /// `text` with every container path replaced by its host path; anything that still looks
    /// like a container path fails the test (a path the map does not know).
    pub(crate) fn map(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (container, host) in &self.pairs {
            out = out.replace(container.as_str(), host.to_str().expect("a UTF-8 path"));
        }
        for prefix in ["/var/lib/", "/opt/", "/etc/clawproxy", "/run/"] {
            assert!(
                !out.contains(prefix),
                "{text:?} names a container path the tests do not map: {out:?}"
            );
        }
        out
    }
}

/// The long options `program [subcommand] --help` lists.
pub(crate) fn help_flags(program: &str, subcommand: Option<&str>) -> Vec<String> {
    let mut args: Vec<&str> = subcommand.into_iter().collect();
    args.push("--help");
    let out = support::run_ok(program, &args);
    let mut flags: Vec<String> = out
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// Asserts every `--flag` of a command line is one its program (or subcommand) lists in its
/// `--help`.
pub(crate) fn assert_known_flags(argv: &[String]) {
    let program = Path::new(&argv[0])
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a program name");
    let subcommand = argv
        .get(1)
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str);
    let known = help_flags(program, subcommand);
    for flag in argv.iter().filter(|a| a.starts_with("--")) {
        let flag = flag.split('=').next().unwrap_or_default();
        assert!(
            known.iter().any(|k| k == flag),
            "{argv:?}: `{program} {}` has no {flag} (it has {known:?})",
            subcommand.unwrap_or_default()
        );
    }
}

/// Starts `argv` (`argv[0]` a binary of the workspace, by name or by path) as a [`Proc`] with
/// `envs` added, its stderr appended to `stderr`; waits for the stdout line starting with
/// `ready` and returns the rest of it.
pub(crate) fn start(
    argv: &[String],
    envs: &[(String, String)],
    stderr: &Path,
    ready: &str,
) -> (Proc, String) {
    let name = Path::new(&argv[0])
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a program name");
    let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Proc::start(name, &args, &envs, stderr, ready)
}

/// The compose file's `connect` service (connect-sim) as a process here: its command line and
/// environment, listening on a free loopback port instead of the container's 0.0.0.0:8080.
pub(crate) fn start_connect(compose: &Compose, work: &Path) -> (Proc, SocketAddr) {
    let mut argv = compose.command("connect");
    let at = argv
        .iter()
        .position(|a| a == "--listen")
        .expect("connect-sim gets --listen");
    argv[at + 1] = "127.0.0.1:0".into();
    let mut envs = compose.environment("connect");
    envs.push(("CLAW_LOG".into(), "warn".into()));
    let (daemon, rest) = start(
        &argv,
        &envs,
        &work.join("connect-sim.stderr"),
        "connect-sim listening on http://",
    );
    (daemon, rest.trim().parse().expect("connect-sim's address"))
}

/// The compose file's `init` service here: its command (deploy/init.sh) and environment with
/// paths mapped, `CLAW_PROXY_ADDR` set to `proxy_addr`, and nothing else but a PATH that finds
/// the workspace's binaries first.
pub(crate) fn run_init(compose: &Compose, paths: &Paths, proxy_addr: &str) -> Output {
    let argv: Vec<String> = compose
        .command("init")
        .iter()
        .map(|a| paths.map(a))
        .collect();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", support::bins().display()),
        )
        .env("CLAW_LOG", "warn")
        .stdin(Stdio::null());
    for (key, value) in compose.environment("init") {
        let value = match key.as_str() {
            "CLAW_PROXY_ADDR" => proxy_addr.to_owned(),
            _ => paths.map(&value),
        };
        command.env(key, value);
    }
    let out = command.output().expect("running the init script");
    assert!(
        out.status.success(),
        "init ({argv:?}) failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The config the compose file mounts (`deploy/…`, by the variable's default), as a TOML table.
pub(crate) fn compose_config(compose: &Compose) -> (PathBuf, toml::Table) {
    let source = compose
        .volumes("clawproxy")
        .into_iter()
        .find(|(_, target)| target == CONFIG)
        .map(|(source, _)| source)
        .unwrap_or_else(|| panic!("the clawproxy service mounts no {CONFIG}"));
    let path = root().join(source.trim_start_matches("./"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path, table)
}

/// Writes the compose file's config to its mapped path, changed only where this machine is not
/// the compose network: the addresses to listen on and the Connect server's URL.
pub(crate) fn write_config(
    compose: &Compose,
    paths: &Paths,
    listen: &str,
    admin: &str,
    connect: SocketAddr,
) {
    let (_, mut table) = compose_config(compose);
    table.insert("listen".into(), listen.into());
    table.insert("admin".into(), admin.into());
    let upstreams = table
        .get_mut("upstream")
        .and_then(toml::Value::as_array_mut)
        .expect("the config has [[upstream]]");
    assert_eq!(upstreams.len(), 1, "one upstream: Connect");
    upstreams[0]
        .as_table_mut()
        .expect("an upstream table")
        .insert("url".into(), format!("http://{connect}").into());
    std::fs::write(paths.host(CONFIG), toml::to_string(&table).unwrap()).unwrap();
}

/// The compose file's `clawproxy` service here: its command line and environment with paths
/// mapped. Returns it with its proxy and admin addresses.
pub(crate) fn start_proxy(
    compose: &Compose,
    paths: &Paths,
    work: &Path,
) -> (Proc, SocketAddr, SocketAddr) {
    let argv: Vec<String> = compose
        .command("clawproxy")
        .iter()
        .map(|a| paths.map(a))
        .collect();
    let mut envs = compose.environment("clawproxy");
    envs.push(("CLAW_LOG".into(), "warn".into()));
    let (daemon, rest) = start(
        &argv,
        &envs,
        &work.join("clawproxy.stderr"),
        "clawproxy listening on ",
    );
    let (listen, admin) = rest
        .split_once(" (admin ")
        .unwrap_or_else(|| panic!("unexpected listening line: {rest}"));
    (
        daemon,
        listen.parse().expect("the listen address"),
        admin
            .trim_end_matches(')')
            .parse()
            .expect("the admin address"),
    )
}

/// `KEY=VALUE` lines of the agent.env the init script wrote.
pub(crate) fn agent_env(paths: &Paths) -> Vec<(String, String)> {
    let path = paths.host(AGENT).join("agent.env");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|line| {
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("agent.env: {line:?} is not KEY=VALUE"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The Dockerfile's HEALTHCHECK command (exec form).
pub(crate) fn healthcheck() -> Vec<String> {
    let stages = dockerfile();
    let runtime = stages.last().expect("a stage");
    let args = runtime
        .all("HEALTHCHECK")
        .last()
        .expect("the runtime stage has a HEALTHCHECK");
    let json = &args[args.find("CMD").expect("HEALTHCHECK … CMD") + 3..];
    serde_json::from_str(json.trim())
        .unwrap_or_else(|e| panic!("HEALTHCHECK CMD is not in exec (JSON) form: {e}: {json}"))
}
