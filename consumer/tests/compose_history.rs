//! The compose demo gives the sensor its history before the live sensor starts, never beside
//! it: two processes continuing sensor-1's walk at once write every record id twice, and the
//! consumer rejects one of each as a duplicate (issue 26). Checked without a Docker engine: the
//! README's `docker compose` steps are played, in order, against a model of which of the compose
//! file's services run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The compose file's services by name.
fn services() -> BTreeMap<String, Yaml> {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    doc["services"].as_hash().unwrap().iter().map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone())).collect()
}

/// The services that run the sensor.
fn sensors(services: &BTreeMap<String, Yaml>) -> BTreeSet<String> {
    services
        .iter()
        .filter(|(_, s)| s["entrypoint"][0].as_str() == Some("weather-producer"))
        .map(|(name, _)| name.clone())
        .collect()
}

/// The services `service` depends on, transitively.
fn with_dependencies(services: &BTreeMap<String, Yaml>, service: &str, into: &mut BTreeSet<String>) {
    if into.insert(service.to_string()) {
        for (dependency, _) in services[service]["depends_on"].as_hash().into_iter().flatten() {
            with_dependencies(services, dependency.as_str().unwrap(), into);
        }
    }
}

/// The README's compose steps: each `docker compose` command of its shell block, as words
/// after `docker compose`, continuation lines joined.
fn readme_compose_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section = readme.split("\n## docker compose\n").nth(1).expect("the README's docker compose section");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("its shell block");
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.trim().strip_prefix("docker compose "))
        .map(|command| command.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Plays `commands` against the compose file's `services`; every moment at which two of them
/// write a sensor's walk at once.
fn overlaps(services: &BTreeMap<String, Yaml>, commands: &[Vec<String>]) -> Vec<String> {
    let sensors = sensors(services);
    let mut up: BTreeSet<String> = BTreeSet::new();
    let mut found = Vec::new();
    for command in commands {
        // `--profile X` pairs and other global flags come before the subcommand.
        let mut words = command.iter().map(String::as_str).peekable();
        let mut subcommand = None;
        while let Some(word) = words.next() {
            if word == "--profile" {
                words.next();
            } else if !word.starts_with('-') {
                subcommand = Some(word);
                break;
            }
        }
        let mut named: Vec<&str> = Vec::new();
        let mut words = words.peekable();
        while let Some(word) = words.next() {
            match word {
                "--scale" | "-e" | "--entrypoint" | "-u" | "--user" | "-w" => {
                    words.next();
                }
                _ if word.starts_with('-') => {}
                _ => named.push(word),
            }
        }
        let live_sensors = |up: &BTreeSet<String>| up.intersection(&sensors).cloned().collect::<Vec<_>>();
        match subcommand {
            Some("up" | "start" | "restart") => {
                for service in named.iter().filter(|s| services.contains_key(**s)) {
                    let mut starting = BTreeSet::new();
                    with_dependencies(services, service, &mut starting);
                    for sensor in starting.intersection(&sensors) {
                        let others: Vec<String> = live_sensors(&up).into_iter().filter(|s| s != sensor).collect();
                        if !others.is_empty() {
                            found.push(format!(
                                "`docker compose {}` starts {sensor} beside {others:?}",
                                command.join(" ")
                            ));
                        }
                    }
                    up.extend(starting);
                }
            }
            Some("run") => {
                // The first name is the service; the rest is its command line. It runs in the
                // foreground: it writes while what is up writes.
                if let Some(service) = named.first().filter(|s| sensors.contains(**s)) {
                    let live = live_sensors(&up);
                    if !live.is_empty() {
                        found
                            .push(format!("`docker compose {}` runs {service} while {live:?} runs", command.join(" ")));
                    }
                }
            }
            Some("stop" | "rm" | "kill") if !named.is_empty() => {
                for service in named {
                    up.remove(service);
                }
            }
            Some("stop" | "rm" | "kill" | "down") => up.clear(),
            _ => {}
        }
    }
    found
}

/// The README's compose steps never run two writers of the sensor at once: the history run
/// (`run --rm producer --count ...`) comes before the live sensor starts; the README says one
/// process per sensor.
#[test]
fn the_history_and_the_live_sensor_never_overlap() {
    let services = services();
    assert_eq!(sensors(&services), BTreeSet::from(["producer".to_string()]), "one sensor service");
    let commands = readme_compose_commands();
    let runs_the_sensor = |c: &Vec<String>| c.iter().any(|w| w == "producer");
    let history = commands.iter().position(|c| c.contains(&"run".to_string()) && runs_the_sensor(c));
    let live = commands.iter().position(|c| c.contains(&"up".to_string()) && runs_the_sensor(c));
    assert!(history.is_some() && live.is_some(), "the steps give a history and start the live sensor: {commands:?}");
    assert_eq!(overlaps(&services, &commands), Vec::<String>::new(), "{commands:?}");
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(readme.contains("One process per sensor"), "the README says one process per sensor");
}

/// The model notices the step issue 26 found: a history run while the live sensor is up.
#[test]
fn a_history_beside_the_live_sensor_is_an_overlap() {
    let services = services();
    let words = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let old = [words("up -d producer minio-init"), words("run --rm producer --rate 0 --count 1095")];
    assert_eq!(overlaps(&services, &old).len(), 1, "{:?}", overlaps(&services, &old));
    let stopped_first = [
        words("up -d producer minio-init"),
        words("stop producer"),
        words("run --rm producer --rate 0 --count 1095"),
        words("start producer"),
    ];
    assert_eq!(overlaps(&services, &stopped_first), Vec::<String>::new());
}
