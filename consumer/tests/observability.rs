//! What operators look at, checked without a Docker engine: the compose demo's Prometheus and
//! Grafana (pinned images, a configuration Prometheus's own `promtool` accepts, a scrape target
//! for every job that serves metrics and none for anything else, Grafana provisioned from the
//! repo's files at the paths compose mounts), the dashboard (JSON that parses, PromQL that
//! `promtool` parses, and only metrics that docs/metrics.md documents), and the local stack's
//! Prometheus (`scripts/stack prometheus`, a real server, scraping the documented ports).
//!
//! promtool 2.42 (Debian 12's) parses PromQL only inside rule files and has no command that
//! lists an expression's metric names, so each query is checked as a recording rule, and its
//! metric names are then picked out by a small scanner of the (already parsed) text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use yaml_rust2::{Yaml, YamlLoader};

/// Series Prometheus records itself for every target, which the dashboard may use beside ours.
const PROMETHEUS_OWN: [&str; 1] = ["up"];
/// What the dashboard must show (issue 23): readings in and out, lag per partition in readings
/// and seconds, rejected readings, checkpoint latency, the archive's files and bytes.
const ON_THE_DASHBOARD: [&str; 13] = [
    "weather_producer_readings_acknowledged_total",
    "weather_consumer_readings_total",
    "weather_archive_readings_total",
    "weather_consumer_lag_readings",
    "weather_consumer_lag_seconds",
    "weather_archive_lag_readings",
    "weather_archive_lag_seconds",
    "weather_consumer_readings_rejected_total",
    "weather_archive_readings_rejected_total",
    "weather_consumer_checkpoint_duration_seconds_bucket",
    "weather_archive_files_total",
    "weather_archive_bytes_total",
    "weather_consumer_windows_written_total",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}")).remove(0)
}

/// The compose file as docker-compose resolves it (with `.env`; every profile's services).
fn compose() -> BTreeMap<String, Yaml> {
    let output = Command::new("docker-compose")
        .arg("config")
        .current_dir(repo())
        .output()
        .expect("docker-compose is not installed: scripts/test installs it (apt-get install docker-compose)");
    assert!(output.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&output.stderr));
    let doc = YamlLoader::load_from_str(&String::from_utf8(output.stdout).unwrap()).unwrap().remove(0);
    doc["services"].as_hash().unwrap().iter().map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone())).collect()
}

fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is not installed: scripts/test installs it (apt-get install prometheus)")
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec().map(|v| v.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

/// A service's bind mounts as (host path, container path), named volumes left out.
fn bind_mounts(service: &Yaml) -> Vec<(PathBuf, String)> {
    strings(&service["volumes"])
        .iter()
        .filter(|v| v.starts_with('/'))
        .map(|v| {
            let mut parts = v.split(':');
            (PathBuf::from(parts.next().unwrap()), parts.next().unwrap().to_string())
        })
        .collect()
}

/// Where the container sees the repo's `path`, if the service mounts it.
fn mounted_at(service: &Yaml, path: &str) -> Option<String> {
    bind_mounts(service).into_iter().find(|(host, _)| *host == repo().join(path)).map(|(_, container)| container)
}

/// The jobs that serve metrics in the compose demo: service name and the port of its
/// WEATHER_METRICS_ADDR.
fn metrics_services(services: &BTreeMap<String, Yaml>) -> BTreeSet<(String, u16)> {
    let mut jobs = BTreeSet::new();
    for (name, service) in services {
        if let Some(addr) = service["environment"]["WEATHER_METRICS_ADDR"].as_str() {
            let (host, port) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{name}: {addr} is not HOST:PORT"));
            // Prometheus scrapes from its own container: 127.0.0.1 would be out of its reach.
            assert_eq!(host, "0.0.0.0", "{name} serves its metrics on every interface of its container");
            jobs.insert((name.clone(), port.parse().unwrap_or_else(|_| panic!("{name}: {addr}"))));
        }
    }
    jobs
}

/// The documented metrics (docs/metrics.md's table): name and type.
fn documented_metrics() -> BTreeMap<String, String> {
    let doc = read("docs/metrics.md");
    let metrics: BTreeMap<String, String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| {
            let (name, rest) = l.split_once("` |")?;
            Some((name.to_string(), rest.split('|').next()?.trim().to_string()))
        })
        .collect();
    assert!(metrics.len() >= 20, "docs/metrics.md lists the metrics: {metrics:?}");
    metrics
}

/// The documented ports (docs/metrics.md's "Ports" table): job and port.
fn documented_ports() -> BTreeSet<(String, u16)> {
    let doc = read("docs/metrics.md");
    let table = doc.split("## Ports").nth(1).expect("docs/metrics.md has a Ports section");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((cells[1].to_string(), cells[2].parse().ok()?))
        })
        .collect()
}

/// The series names a query may use: every documented metric, a histogram's as its
/// `_bucket`, `_sum` and `_count`, and Prometheus's own.
fn known_series() -> BTreeSet<String> {
    let mut known: BTreeSet<String> = PROMETHEUS_OWN.iter().map(|s| s.to_string()).collect();
    for (name, kind) in documented_metrics() {
        if kind == "histogram" {
            known.extend(["_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")));
        } else {
            known.insert(name);
        }
    }
    known
}

/// The metric names of a PromQL expression that promtool has parsed: identifiers outside label
/// matchers, ranges and strings that are neither functions (followed by `(`), keywords and
/// aggregations, nor the label lists of `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    // Aggregations may be followed by `by (...)` rather than their `(`.
    const KEYWORDS: [&str; 20] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: [&str; 6] = ["by", "without", "on", "ignoring", "group_left", "group_right"];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to =
        |from: usize, close: char| chars[from..].iter().position(|&c| c == close).map_or(chars.len(), |p| from + p + 1);
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_to(i + 1, c);
        } else if c.is_ascii_digit() || c == '.' {
            // A number or a duration (0.99, 5m, 1e3).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if LABEL_LISTS.contains(&word.as_str()) {
                if next == Some('(') {
                    i = skip_to(i, ')');
                }
            } else if next != Some('(') && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Every query of the dashboard (panels within rows too): (panel title, expression).
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or_default();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: a target without a query"));
                out.push((title.to_string(), expr.to_string()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut queries = Vec::new();
    walk(&dashboard["panels"], &mut queries);
    queries
}

fn dashboard() -> serde_json::Value {
    let path = "ops/grafana/dashboards/weather-pipeline.json";
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Prometheus's and Grafana's images are pinned to an exact release, never `latest`.
#[test]
fn prometheus_and_grafana_images_are_pinned() {
    let services = compose();
    for (name, repository) in [("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")] {
        let image = services[name]["image"].as_str().unwrap_or_else(|| panic!("{name} has an image"));
        let (image_repository, tag) = image.rsplit_once(':').unwrap_or_else(|| panic!("{name}: {image} has no tag"));
        assert_eq!(image_repository, repository, "{name}");
        let version: Vec<&str> = tag.trim_start_matches('v').split('.').collect();
        assert!(
            version.len() == 3 && version.iter().all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())),
            "{name}: {image} is not pinned to a release X.Y.Z"
        );
    }
}

/// The compose demo's Prometheus configuration is one that Prometheus accepts, and the
/// prometheus service runs with it.
#[test]
fn the_prometheus_configuration_is_valid() {
    let path = repo().join("ops/prometheus/prometheus.yml");
    let check = promtool(&["check", "config", path.to_str().unwrap()]);
    assert!(check.status.success(), "promtool check config: {}", String::from_utf8_lossy(&check.stdout));
    let prometheus = &compose()["prometheus"];
    let config = mounted_at(prometheus, "ops/prometheus/prometheus.yml").expect("prometheus mounts its configuration");
    assert!(strings(&prometheus["command"]).contains(&format!("--config.file={config}")), "and reads it");
}

/// Prometheus scrapes exactly the services that serve metrics, each at the port of its
/// WEATHER_METRICS_ADDR, and those are the ports docs/metrics.md gives.
#[test]
fn prometheus_scrapes_every_job_at_its_metrics_port() {
    let services = compose();
    let serving = metrics_services(&services);
    for job in ["weather-producer", "weather-consumer", "weather-archive"] {
        assert!(
            serving
                .iter()
                .any(|(name, _)| strings(&services[name]["entrypoint"]).first().map(String::as_str) == Some(job)),
            "some service runs {job} with its metrics on"
        );
    }
    let config = yaml("ops/prometheus/prometheus.yml");
    let mut scraped = BTreeSet::new();
    for job in config["scrape_configs"].as_vec().expect("scrape_configs") {
        let name = job["job_name"].as_str().unwrap();
        for static_config in job["static_configs"].as_vec().into_iter().flatten() {
            for target in strings(&static_config["targets"]) {
                let (host, port) = target.rsplit_once(':').unwrap_or_else(|| panic!("{name}: {target} has no port"));
                scraped.insert((host.to_string(), port.parse::<u16>().unwrap()));
            }
        }
        for dns in job["dns_sd_configs"].as_vec().into_iter().flatten() {
            assert_eq!(dns["type"].as_str(), Some("A"), "{name}: compose's DNS answers A records");
            let port = dns["port"].as_i64().unwrap_or_else(|| panic!("{name}: a port")) as u16;
            for host in strings(&dns["names"]) {
                scraped.insert((host, port));
            }
        }
        assert!(job["kubernetes_sd_configs"].is_badvalue() && job["file_sd_configs"].is_badvalue(), "{name}");
    }
    assert_eq!(scraped, serving, "the scrape targets against the services' WEATHER_METRICS_ADDR");
    assert_eq!(serving, documented_ports(), "the services' ports against docs/metrics.md");
}

/// Grafana reads its provisioning and the dashboard from the repo's files, at the paths the
/// compose file mounts them, and its data source is the compose demo's Prometheus.
#[test]
fn grafana_is_provisioned_from_the_repo() {
    let services = compose();
    let grafana = &services["grafana"];
    // Each kind of provisioning where Grafana looks for it: /etc/grafana/provisioning/<kind>.
    let kinds = std::fs::read_dir(repo().join("ops/grafana/provisioning")).unwrap();
    let kinds: Vec<String> = kinds.map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(kinds.contains(&"datasources".into()) && kinds.contains(&"dashboards".into()), "{kinds:?}");
    for kind in kinds {
        assert_eq!(
            mounted_at(grafana, &format!("ops/grafana/provisioning/{kind}")),
            Some(format!("/etc/grafana/provisioning/{kind}")),
            "Grafana reads its {kind} provisioning"
        );
    }
    let dashboards = mounted_at(grafana, "ops/grafana/dashboards").expect("grafana mounts ops/grafana/dashboards");

    let providers = yaml("ops/grafana/provisioning/dashboards/weather-pipeline.yml");
    let providers = providers["providers"].as_vec().expect("providers");
    assert!(!providers.is_empty());
    for provider in providers {
        assert_eq!(provider["type"].as_str(), Some("file"));
        assert_eq!(provider["options"]["path"].as_str(), Some(dashboards.as_str()), "the provider reads the mount");
    }
    // The admin's password comes from .env, and is not written in the compose file.
    let raw = read("docker-compose.yml");
    assert!(raw.contains("GF_SECURITY_ADMIN_PASSWORD: ${GRAFANA_ADMIN_PASSWORD}"), "Grafana's password from .env");
    let home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].as_str().expect("a home dashboard");
    let file = home.strip_prefix(&format!("{dashboards}/")).expect("the home dashboard is in the mounted directory");
    assert!(repo().join("ops/grafana/dashboards").join(file).is_file(), "{home} exists in the repo");

    let datasources = yaml("ops/grafana/provisioning/datasources/prometheus.yml");
    let datasource = &datasources["datasources"][0];
    assert_eq!(datasource["type"].as_str(), Some("prometheus"));
    let url = datasource["url"].as_str().unwrap();
    let (host, port) = url.trim_start_matches("http://").split_once(':').expect("http://HOST:PORT");
    assert!(services.contains_key(host), "{url} names the compose service {host}");
    assert!(
        strings(&services[host]["ports"]).iter().any(|p| p.trim_end_matches("/tcp").ends_with(&format!(":{port}"))),
        "{host} listens on {port} (Prometheus's default, which compose publishes)"
    );
    let uid = datasource["uid"].as_str().expect("the data source has a uid the dashboard names");
    for panel in dashboard()["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"].as_str(), Some(uid), "{}", panel["title"]);
    }
}

/// The dashboard parses, every query parses as PromQL (promtool), every metric a query uses is
/// one docs/metrics.md documents, and it shows what operators ask for.
#[test]
fn the_dashboard_queries_documented_metrics() {
    let queries = dashboard_queries(&dashboard());
    assert!(queries.len() >= 10, "{queries:?}");
    // Grafana's interval variables, which promtool does not know, as durations.
    let as_promql =
        |expr: &str| expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h");
    let rules: String = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| format!("      - record: dashboard:query_{i}\n        expr: {:?}\n", as_promql(expr)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, format!("groups:\n  - name: dashboard\n    rules:\n{rules}")).unwrap();
    let check = promtool(&["check", "rules", file.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "promtool check rules (each query as a recording rule): {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let known = known_series();
    let mut used = BTreeSet::new();
    for (title, expr) in &queries {
        let names = metric_names(&as_promql(expr));
        assert!(!names.is_empty(), "{title}: {expr} queries no metric");
        for name in names {
            assert!(known.contains(&name), "{title}: {name} is not in docs/metrics.md ({expr})");
            used.insert(name);
        }
    }
    for name in ON_THE_DASHBOARD {
        assert!(used.contains(name), "the dashboard shows {name}");
    }
    assert!(read("README.md").contains("(docs/metrics.md)"), "the README links the metrics");
}

/// The scanner finds the metric names of a query, and not its functions, labels or numbers.
#[test]
fn metric_names_are_picked_out_of_a_query() {
    let expr = r#"histogram_quantile(0.99, sum by (job, le) (rate(a_seconds_bucket{job="x", le!="1"}[5m]))) / on (job) group_left (sink) b_total offset 5m and time() - c"#;
    assert_eq!(metric_names(expr), ["a_seconds_bucket", "b_total", "c"].map(String::from).into());
    assert_eq!(metric_names("sum(rate(x_total[1m])) by (reason)"), ["x_total".to_string()].into());
}

/// Stops the local stack's Prometheus when the test ends, whether it passed or not.
struct StackDown<'a>(&'a Path);

impl Drop for StackDown<'_> {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/stack")).arg("down").env("WEATHER_STACK_DIR", self.0).output();
    }
}

/// `scripts/stack prometheus` starts Debian's Prometheus on 127.0.0.1 with a configuration
/// promtool accepts, and it scrapes every job at the port docs/metrics.md gives it (the jobs
/// are not running: their targets are down, but they are there); `scripts/stack down` stops it.
#[test]
fn the_local_stacks_prometheus_scrapes_the_documented_ports() {
    let stack = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let _down = StackDown(stack.path());
    let started = Command::new(repo().join("scripts/stack"))
        .arg("prometheus")
        .env("WEATHER_STACK_DIR", stack.path())
        .env("WEATHER_PROMETHEUS_PORT", port.to_string())
        .output()
        .unwrap();
    assert!(started.status.success(), "scripts/stack prometheus: {}", String::from_utf8_lossy(&started.stderr));
    let config = stack.path().join("prometheus.yml");
    let check = promtool(&["check", "config", config.to_str().unwrap()]);
    assert!(check.status.success(), "promtool check config: {}", String::from_utf8_lossy(&check.stdout));

    // `up` has a series per target once each was scraped (every 5 s): a real PromQL query.
    let expected: BTreeSet<String> = documented_ports()
        .iter()
        .map(|(job, port)| format!("up{{instance=\"127.0.0.1:{port}\", job=\"{job}\"}}"))
        .collect();
    let server = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut series = BTreeSet::new();
    while series != expected {
        assert!(Instant::now() < deadline, "after 60 s, `up` is {series:?}, not {expected:?}");
        // Prometheus tells no one when it has scraped: ask again shortly.
        std::thread::sleep(Duration::from_millis(250));
        let answer = promtool(&["query", "instant", &server, "up"]);
        series = String::from_utf8_lossy(&answer.stdout)
            .lines()
            .filter_map(|l| l.split_once(" => ").map(|(s, _)| s.to_string()))
            .collect();
    }

    let pid: i32 = std::fs::read_to_string(stack.path().join("prometheus.pid")).unwrap().trim().parse().unwrap();
    let down =
        Command::new(repo().join("scripts/stack")).arg("down").env("WEATHER_STACK_DIR", stack.path()).output().unwrap();
    assert!(down.status.success(), "scripts/stack down: {}", String::from_utf8_lossy(&down.stderr));
    // Gone, or a zombie that whoever adopted it has yet to reap.
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        "scripts/stack down stopped prometheus ({pid}): {state}"
    );
}
