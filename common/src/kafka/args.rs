//! How to reach Kafka, as a user sets it: brokers, `-X` overrides as in kcat, secrets from the
//! environment. This is the one place that builds an rdkafka `ClientConfig`.

use std::time::Duration;

use rdkafka::config::{ClientConfig, RDKafkaLogLevel};

/// Environment variables read for secrets, so they never appear in flags, shell history or logs.
pub const SECRET_ENV: [(&str, &str); 2] =
    [("KAFKA_SASL_USERNAME", "sasl.username"), ("KAFKA_SASL_PASSWORD", "sasl.password")];

/// How to reach Kafka. Flattened into every binary's command line.
#[derive(clap::Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, comma-separated `host:port`.
    #[arg(short = 'b', long, env = "KAFKA_BOOTSTRAP_SERVERS", default_value = "localhost:9092")]
    pub bootstrap_servers: String,

    /// Any librdkafka setting as KEY=VALUE, repeatable (as kcat's -X), e.g.
    /// `-X security.protocol=SASL_SSL`. Secrets are refused here: set KAFKA_SASL_USERNAME and
    /// KAFKA_SASL_PASSWORD in the environment instead. In the environment variable, separate
    /// settings with `;`.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_override, env = "KAFKA_X", value_delimiter = ';')]
    pub overrides: Vec<(String, String)>,

    /// How long to keep retrying an unreachable broker at start before giving up. Default: 15 s
    /// while no broker has answered yet (a wrong address is said at once), 60 s once one has.
    #[arg(long, env = "KAFKA_CONNECT_TIMEOUT", value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: Option<u64>,
}

/// How long an unreachable broker is retried by default once one has answered: a broker
/// restarting, a topic being created.
const CONNECT_TIMEOUT: u64 = 60;
/// How long the first answer of any broker is waited for by default.
const FIRST_ANSWER_TIMEOUT: u64 = 15;

impl KafkaArgs {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaArgs { bootstrap_servers: bootstrap_servers.into(), overrides: Vec::new(), connect_timeout: None }
    }

    /// The base configuration every client of this project starts from; the `-X` overrides
    /// are applied last so that a user can change any default.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config.set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (var, key) in SECRET_ENV {
            if let Ok(value) = std::env::var(var) {
                config.set(key, value);
            }
        }
        for (key, value) in &self.overrides {
            config.set(key, value);
            // rdkafka sets librdkafka's log level from `set_log_level` (Warning, above) once
            // the client exists, which would drop the very lines `-X debug=...` asks for.
            if key == "debug" && !value.is_empty() {
                config.set_log_level(RDKafkaLogLevel::Debug);
            }
        }
        config
    }

    /// The configuration of a consumer of this project in `group`: it commits only the
    /// offsets it chose to, never by itself, and is told where each partition ends; `extra`
    /// adds to that or changes it.
    pub fn consumer_config(&self, group: &str, extra: &[(&str, &str)]) -> ClientConfig {
        let mut settings = vec![
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
        ];
        settings.extend_from_slice(extra);
        self.client_config(&settings)
    }

    /// How long an unreachable broker is retried once one has answered: `--connect-timeout`,
    /// else a minute.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.unwrap_or(CONNECT_TIMEOUT))
    }

    /// How long the first answer of any broker is waited for: `--connect-timeout`, else 15 s.
    pub fn first_answer_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout.unwrap_or(FIRST_ANSWER_TIMEOUT))
    }
}

fn parse_override(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`{s}` has no key before `=`"));
    }
    if ["password", "secret", "sasl.username"].iter().any(|word| key.contains(word)) {
        return Err(format!(
            "`{key}` is a secret and would end up in shell history: set it in the environment \
             ({}) instead",
            SECRET_ENV.iter().map(|(var, _)| *var).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `-X` takes KEY=VALUE and says what is wrong otherwise.
    #[test]
    fn overrides_are_key_value_pairs() {
        assert_eq!(parse_override("linger.ms=5").unwrap(), ("linger.ms".into(), "5".into()));
        assert_eq!(parse_override("client.id=a=b").unwrap(), ("client.id".into(), "a=b".into()));
        assert!(parse_override("linger.ms").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_override("=5").unwrap_err().contains("no key"));
    }

    /// Secrets are refused on the command line and pointed at the environment.
    #[test]
    fn secrets_are_refused_as_flags() {
        let err = parse_override("sasl.password=hunter2").unwrap_err();
        assert!(err.contains("KAFKA_SASL_PASSWORD"), "{err}");
        assert!(!err.contains("hunter2"), "the secret must not be echoed: {err}");
        assert!(parse_override("ssl.key.password=x").is_err());
    }

    /// Overrides win over the project's defaults.
    #[test]
    fn overrides_win_over_defaults() {
        let mut args = KafkaArgs::new("b:1");
        args.overrides.push(("acks".into(), "1".into()));
        let config = args.client_config(&[("acks", "all"), ("linger.ms", "5")]);
        assert_eq!(config.get("acks"), Some("1"));
        assert_eq!(config.get("linger.ms"), Some("5"));
        assert_eq!(config.get("bootstrap.servers"), Some("b:1"));
    }
}
