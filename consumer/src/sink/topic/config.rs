//! What a user sets for the aggregates topic, checked before any work starts, and how it opens.

use std::sync::Arc;

use super::{GroupTopic, TopicTable, STATE_SUFFIX};
use crate::rules::Rules;
use crate::share::store::Mirror;
use crate::sink::table::{Checks, Opening, TableConfig, TableFlags, WindowTable};

/// Kafka's longest topic name, less the companion's suffix.
const MAX_TOPIC_LEN: usize = 249 - STATE_SUFFIX.len();
/// The aggregates topic's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct TopicArgs {
    /// Also publish every window to this Kafka topic, compacted, keyed by window (created if
    /// missing, with the source topic's partition count); its progress lives in NAME.state.
    #[arg(long, env = "WEATHER_TO_TOPIC", value_name = "NAME")]
    pub to_topic: Option<String>,
}

impl TableFlags for TopicArgs {
    fn flag(&self) -> &'static str {
        "--to-topic"
    }

    fn check(self: Box<Self>, checks: &Checks<'_>) -> Result<Option<Arc<dyn TableConfig>>, String> {
        let Some(name) = &self.to_topic else { return Ok(None) };
        Ok(Some(Arc::new(TopicTarget::parse(name, &[checks.topic, checks.dead_letter_topic])?)))
    }
}

/// Where the windows go: `--to-topic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTarget {
    pub topic: String,
}

impl TopicTarget {
    /// Checks `--to-topic`: a Kafka topic name, none of the topics the consumer reads or keeps
    /// rejected readings in.
    pub fn parse(name: &str, taken: &[&str]) -> Result<TopicTarget, String> {
        let legal = name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if name.is_empty() || !legal || name.len() > MAX_TOPIC_LEN || name == "." || name == ".." {
            return Err(format!(
                "--to-topic: `{name}` is not a Kafka topic name this consumer creates: 1 to {MAX_TOPIC_LEN} \
                 characters of a-z A-Z 0-9 . _ -"
            ));
        }
        for &other in taken {
            if name == other || format!("{name}{STATE_SUFFIX}") == other {
                return Err(format!(
                    "--to-topic: `{name}` is the topic read or the dead-letter topic (`{other}`): name another"
                ));
            }
        }
        Ok(TopicTarget { topic: name.to_string() })
    }

    pub fn state_topic(&self) -> String {
        format!("{}{STATE_SUFFIX}", self.topic)
    }
}

impl TableConfig for TopicTarget {
    fn kind(&self) -> &'static str {
        "topic"
    }

    fn default_group(&self, rules: &Rules) -> String {
        format!("weather-consumer-{}-{}-topic:{}", rules.window.label(), rules.unit.name(), self.topic)
    }

    fn open(&self, run: &Opening<'_>) -> anyhow::Result<Box<dyn WindowTable>> {
        Ok(Box::new(TopicTable::open(run, self)?))
    }

    fn mirrors(&self) -> bool {
        true
    }

    fn mirror(&self, run: &Opening<'_>) -> anyhow::Result<Box<dyn Mirror>> {
        Ok(Box::new(GroupTopic::open(run, self)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Topic names as Kafka takes them, none of the consumer's own topics.
    #[test]
    fn topic_names() {
        let taken = ["weather", "weather.dlq"];
        assert_eq!(TopicTarget::parse("weather.aggregates", &taken).unwrap().state_topic(), "weather.aggregates.state");
        for bad in ["", ".", "..", "a b", "a/b", "weather", "weather.dlq", &"a".repeat(MAX_TOPIC_LEN + 1)] {
            assert!(TopicTarget::parse(bad, &taken).unwrap_err().starts_with("--to-topic"), "{bad}");
        }
    }
}
