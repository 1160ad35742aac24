//! The docker-compose demo, checked without a Docker engine: the file as `docker-compose
//! config` resolves it (with `.env`), the command lines and environment our services get,
//! the names they must agree on, and the Dockerfile that builds them.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::{ArgAction, CommandFactory, Parser};
use yaml_rust2::{Yaml, YamlLoader};

const BINARIES: [&str; 4] = ["weather-producer", "weather-consumer", "weather-archive", "weather-report"];
/// Variables our services may get that the binaries do not read as flags: the AWS SDK, the
/// PostgreSQL password (as libpq's) and the log filter read them.
const OTHER_ENV: [&str; 5] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "PGPASSWORD", "RUST_LOG"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The compose file with every profile, as docker-compose resolves it.
fn compose() -> Yaml {
    let output = Command::new("docker-compose")
        .args(["--profile", "v1", "--profile", "v2", "--profile", "report", "config"])
        .current_dir(repo())
        .output()
        .expect("docker-compose is not installed: scripts/test installs it (apt-get install docker-compose)");
    assert!(output.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&output.stderr));
    YamlLoader::load_from_str(&String::from_utf8(output.stdout).unwrap()).unwrap().remove(0)
}

fn services(doc: &Yaml) -> Vec<(String, Yaml)> {
    doc["services"].as_hash().unwrap().iter().map(|(k, v)| (k.as_str().unwrap().to_string(), v.clone())).collect()
}

/// Our services: the ones built from the repo's Dockerfile.
fn ours(doc: &Yaml) -> Vec<(String, Yaml)> {
    services(doc).into_iter().filter(|(_, s)| !s["build"].is_badvalue()).collect()
}

fn strings(list: &Yaml) -> Vec<String> {
    list.as_vec().map(|v| v.iter().map(|s| s.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

fn env(service: &Yaml, key: &str) -> Option<String> {
    service["environment"][key].as_str().map(str::to_string)
}

/// The command line a service's environment amounts to, as flags of `cli`, so that the
/// binary's own parser checks every value. A variable the binary does not read is an error.
fn env_as_flags(cli: &clap::Command, service_name: &str, service: &Yaml) -> Vec<String> {
    let mut flags = Vec::new();
    for (key, value) in service["environment"].as_hash().into_iter().flatten() {
        let (key, value) = (key.as_str().unwrap(), value.as_str().unwrap());
        let Some(arg) = cli.get_arguments().find(|a| a.get_env().is_some_and(|e| e == key)) else {
            assert!(
                OTHER_ENV.contains(&key),
                "{service_name}: {key} is read by neither {} nor the AWS SDK",
                cli.get_name()
            );
            continue;
        };
        let flag = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => format!("--{long}"),
            (None, Some(short)) => format!("-{short}"),
            _ => unreachable!("every env-backed argument is a flag"),
        };
        match arg.get_action() {
            ArgAction::SetTrue => {
                if ["true", "1", "yes", "on"].contains(&value) {
                    flags.push(flag);
                }
            }
            _ => flags.extend([flag, value.to_string()]),
        }
    }
    flags
}

/// Every command line and environment variable given to our services is accepted by the
/// binaries' own argument parsing, and the consumers' settings check out.
#[test]
fn our_services_get_flags_the_binaries_accept() {
    let doc = compose();
    let ours = ours(&doc);
    assert_eq!(ours.len(), 6, "producer, consumer-v1, consumer-v2, aggregator, archiver, report");
    let out = tempfile::tempdir().unwrap();
    for (name, service) in ours {
        let entrypoint = strings(&service["entrypoint"]);
        let binary = entrypoint.first().unwrap_or_else(|| panic!("{name} has no entrypoint"));
        let mut argv: Vec<String> = entrypoint.iter().chain(&strings(&service["command"])).cloned().collect();
        match binary.as_str() {
            "weather-producer" => {
                argv.extend(env_as_flags(&weather_producer::Cli::command(), &name, &service));
                weather_producer::Cli::try_parse_from(&argv)
                    .and_then(weather_producer::Cli::settings)
                    .unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
            }
            "weather-consumer" => {
                argv.extend(env_as_flags(&weather_consumer::Cli::command(), &name, &service));
                let mut cli =
                    weather_consumer::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
                if cli.file.no_file {
                    // The scaled-out aggregator: members of a shared group, restarted when they crash.
                    let settings = cli.settings().unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
                    assert!(settings.share.is_some(), "{name} writes no file: it is a member of a shared group");
                    assert_eq!(service["restart"].as_str(), Some("on-failure"), "{name}: a crashed member comes back");
                    continue;
                }
                // /out exists in the container, not here.
                let output = cli.file.output.clone().expect("consumers name their output");
                assert!(output.starts_with("/out"), "{name} writes to the mounted /out: {}", output.display());
                cli.file.output = Some(out.path().join(output.file_name().unwrap()));
                cli.settings().unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
            }
            "weather-archive" => {
                argv.extend(env_as_flags(&weather_archive::Cli::command(), &name, &service));
                let cli =
                    weather_archive::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
                let settings = cli.settings().unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
                assert!(
                    matches!(settings.destination, weather_archive::Destination::S3 { .. }),
                    "{name} writes to MinIO"
                );
                assert!(settings.member.is_some(), "{name} shares the partitions in a group (--scale)");
            }
            "weather-report" => {
                argv.extend(env_as_flags(&weather_report::Cli::command(), &name, &service));
                let settings = weather_report::Cli::try_parse_from(&argv)
                    .and_then(weather_report::Cli::settings)
                    .unwrap_or_else(|e| panic!("{name}: {argv:?}: {e}"));
                let weather_report::Output::Files { html: Some(html), .. } = settings.output else {
                    panic!("the report service writes the HTML page")
                };
                assert!(html.starts_with("/out"), "{name} writes to the mounted /out: {}", html.display());
            }
            other => panic!("{name} runs {other}, which the workspace does not build"),
        }
        assert!(strings(&service["volumes"]).iter().any(|v| v.ends_with(":/out:rw") || v.ends_with(":/out")), "{name}");
    }
}

/// Topic, bucket, endpoint and credentials agree across services.
#[test]
fn names_agree_across_services() {
    let doc = compose();
    let all: std::collections::BTreeMap<String, Yaml> = services(&doc).into_iter().collect();
    let advertised = env(&all["kafka"], "KAFKA_ADVERTISED_LISTENERS").unwrap();
    let broker = advertised.trim_start_matches("PLAINTEXT://");
    let topic_init = strings(&all["kafka-init"]["command"]).join(" ");
    let bucket_init = strings(&all["minio-init"]["command"]).join(" ");
    for (name, service) in ours(&doc) {
        assert_eq!(env(&service, "KAFKA_BOOTSTRAP_SERVERS").as_deref(), Some(broker), "{name}");
        let topic = env(&service, "WEATHER_TOPIC").unwrap_or_else(|| "weather".into());
        assert!(topic_init.contains(&format!("--topic {topic} ")), "kafka-init creates {topic} for {name}");
        assert!(topic_init.contains(&format!("--topic {topic}.dlq ")), "kafka-init creates {topic}.dlq for {name}");
        assert!(!service["depends_on"]["kafka-init"].is_badvalue(), "{name} waits for the topics");
    }
    assert!(all.contains_key("minio"));
    for name in ["consumer-v2", "archiver"] {
        let service = &all[name];
        let bucket = env(service, "WEATHER_S3_BUCKET").unwrap();
        assert!(bucket_init.ends_with(&format!("demo/{bucket}")), "minio-init creates {bucket}: {bucket_init}");
        assert_eq!(env(service, "WEATHER_S3_ENDPOINT").as_deref(), Some("http://minio:9000"), "{name}");
        assert_eq!(env(service, "AWS_ACCESS_KEY_ID"), env(&all["minio"], "MINIO_ROOT_USER"), "{name}");
        assert_eq!(env(service, "AWS_SECRET_ACCESS_KEY"), env(&all["minio"], "MINIO_ROOT_PASSWORD"), "{name}");
        assert!(!service["depends_on"]["minio-init"].is_badvalue(), "{name} waits for the bucket");
    }
    let v2 = &all["consumer-v2"];
    let postgres = &all["postgres"];
    let (user, database) = (env(postgres, "POSTGRES_USER").unwrap(), env(postgres, "POSTGRES_DB").unwrap());
    assert_eq!(env(v2, "WEATHER_POSTGRES_URL"), Some(format!("postgres://{user}@postgres:5432/{database}")));
    assert_eq!(env(v2, "PGPASSWORD"), env(postgres, "POSTGRES_PASSWORD"), "consumer-v2 signs in with the password");
    assert!(!v2["depends_on"]["postgres"].is_badvalue(), "consumer-v2 waits for PostgreSQL");
    let aggregates = env(v2, "WEATHER_TO_TOPIC").expect("consumer-v2 publishes its windows to a topic");
    assert_eq!(env(&all["report"], "WEATHER_AGGREGATES_TOPIC"), Some(aggregates), "the report reads that topic");
}

/// Every image, and every base image of the Dockerfile, is pinned to a version.
#[test]
fn every_image_is_pinned() {
    let pinned = |image: &str| {
        let tag = image.rsplit_once(':').map(|(_, t)| t).filter(|t| !t.contains('/'));
        tag.is_some_and(|t| t != "latest" && t.chars().any(|c| c.is_ascii_digit()))
    };
    for (name, service) in services(&compose()) {
        let image = service["image"].as_str().unwrap_or_else(|| panic!("{name} has no image"));
        assert!(pinned(image), "{name}: {image} is not pinned");
    }
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    for line in dockerfile.lines().filter(|l| l.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).unwrap();
        assert!(pinned(image), "Dockerfile: {image} is not pinned");
    }
}

/// The Dockerfile builds and installs exactly the binaries the workspace defines and the
/// README documents, and runs them as a non-root user.
#[test]
fn dockerfile_builds_the_documented_binaries() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let build = dockerfile.lines().find(|l| l.contains("cargo build")).expect("a cargo build step");
    for binary in BINARIES {
        let crate_dir = binary.trim_start_matches("weather-");
        let manifest = std::fs::read_to_string(repo().join(crate_dir).join("Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("[[bin]]\nname = \"{binary}\"")), "{crate_dir}/Cargo.toml defines {binary}");
        assert!(build.contains(&format!("--bin {binary}")), "the Dockerfile builds {binary}");
        assert!(
            dockerfile.contains(&format!("COPY --from=build /app/target/release/{binary} /usr/local/bin/{binary}")),
            "the Dockerfile installs {binary}"
        );
        assert!(readme.contains(&format!("### `{binary}`")), "the README documents {binary}");
    }
    assert!(dockerfile.lines().any(|l| l.starts_with("USER ") && !l.contains("root")), "runs as non-root");
}
