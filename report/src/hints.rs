//! What a user is told when the topic named is not an aggregates topic: a missing topic, or one
//! whose records are no window's averages (the readings topic, say), each with the way to the
//! right one. Pure: the broker's topics are looked up by the caller.

use std::collections::BTreeMap;

use weather_common::meter::{counted, thousands};

/// The topics among `existing` that a `weather-consumer --to-topic NAME` wrote: the topic sink
/// keeps its progress in a companion topic, `NAME.state`.
pub fn aggregates_topics(existing: &[String]) -> Vec<&str> {
    let mut found: Vec<&str> = existing
        .iter()
        .filter(|topic| existing.iter().any(|other| other.strip_suffix(".state") == Some(topic.as_str())))
        .map(String::as_str)
        .collect();
    found.sort_unstable();
    found
}

/// Where the aggregates are on this broker, or how to publish them.
fn the_way(topic: &str, existing: &[String]) -> String {
    match aggregates_topics(existing).as_slice() {
        [] => format!(
            "there is none on this broker yet: `weather-consumer --to-topic {topic}` publishes the windows it \
             writes to one, and creates it"
        ),
        [one] => format!("the aggregates topic on this broker is `{one}` (weather-report -t {one})"),
        many => {
            let listed: Vec<String> = many.iter().map(|t| format!("`{t}`")).collect();
            format!("the aggregates topics on this broker are {}", listed.join(", "))
        }
    }
}

/// The likely topic for a typo among `existing`.
fn likely<'a>(topic: &str, existing: &'a [String]) -> Option<&'a str> {
    existing
        .iter()
        .filter(|t| t.as_str() != topic)
        .min_by_key(|t| strsim::levenshtein(topic, t))
        .filter(|t| strsim::levenshtein(topic, t) <= 2)
        .map(String::as_str)
}

/// `topic` does not exist on `brokers`, which has `existing`.
pub fn missing_topic(topic: &str, brokers: &str, existing: &[String]) -> String {
    let typo = likely(topic, existing).map(|t| format!(" (did you mean `{t}`?)")).unwrap_or_default();
    format!(
        "topic `{topic}` does not exist on {brokers}{typo}: weather-report reads an aggregates topic, and {}",
        the_way(topic, existing)
    )
}

/// `topic` holds `records`, none of them a window's averages; `existing` are the broker's topics.
pub fn not_aggregates(topic: &str, records: u64, by_category: &BTreeMap<&str, u64>, existing: &[String]) -> String {
    let by: Vec<String> = by_category.iter().map(|(c, n)| format!("{c} {}", thousands(*n))).collect();
    let readings = if topic.ends_with(".dlq") || topic.ends_with(".state") {
        String::new()
    } else {
        " (the readings topic, perhaps)".to_string()
    };
    format!(
        "`{topic}` is not an aggregates topic{readings}: none of its {} is a window's averages ({}). {}",
        counted(records, "record"),
        by.join(", "),
        capitalised(&the_way("NAME", existing))
    )
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// An aggregates topic is one with the topic sink's `.state` companion.
    #[test]
    fn aggregates_topics_have_a_state_companion() {
        let existing = topics(&["weather", "weather.dlq", "weather.aggregates.state", "weather.aggregates", "b.state"]);
        assert_eq!(aggregates_topics(&existing), ["weather.aggregates"]);
    }

    /// On the readings topic the message says so and names the aggregates topic.
    #[test]
    fn the_readings_topic_points_to_the_aggregates_topic() {
        let existing = topics(&["weather", "weather.aggregates", "weather.aggregates.state"]);
        let text = not_aggregates("weather", 1465, &BTreeMap::from([("not-json", 1465)]), &existing);
        assert!(text.starts_with("`weather` is not an aggregates topic (the readings topic, perhaps)"), "{text}");
        assert!(text.contains("none of its 1,465 records is a window's averages (not-json 1,465)"), "{text}");
        assert!(text.contains("The aggregates topic on this broker is `weather.aggregates`"), "{text}");
    }

    /// A missing topic points to the consumer's --to-topic, and to the likely name for a typo.
    #[test]
    fn a_missing_topic_points_to_the_consumer() {
        let text = missing_topic("weather.aggregates", "b:9092", &topics(&["weather"]));
        assert!(
            text.contains(
                "weather-report reads an aggregates topic, and there is none on this broker yet: \
                 `weather-consumer --to-topic weather.aggregates` publishes the windows it writes to one"
            ),
            "{text}"
        );
        let text = missing_topic("agregates", "b:9092", &topics(&["aggregates", "aggregates.state"]));
        assert!(text.contains("(did you mean `aggregates`?)") && text.contains("is `aggregates`"), "{text}");
    }
}
