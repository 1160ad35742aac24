//! What a user sets on the sensor: every flag has `--help` text and an environment variable.

use clap::Parser;
use weather_common::kafka::KafkaArgs;
use weather_common::meter::ProgressArgs;
use weather_common::metrics::MetricsArgs;

/// The weather sensor: publishes a bounded random walk of readings (one per simulated day)
/// to a Kafka topic, as JSON keyed by sensor id. On restart each sensor continues where the
/// topic left it.
#[derive(Parser, Debug, Clone)]
#[command(name = "weather-producer", version)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic to publish to.
    #[arg(short = 't', long, env = "WEATHER_TOPIC", default_value = "weather")]
    pub topic: String,

    /// Readings per second per sensor (the walkthrough sent 1); 0 sends as fast as the
    /// broker takes them.
    #[arg(long, env = "WEATHER_RATE", default_value_t = 1.0, value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: f64,

    /// Readings (simulated days) per sensor, then stop. Default: until stopped.
    #[arg(long, env = "WEATHER_COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Seed of the random walk: the same seed on the same topic gives the same readings. On a
    /// topic that already holds readings of a sensor, its walk continues from the last one, so
    /// the same seed then gives other readings than on an empty topic. Default: a random seed,
    /// logged so the run can be repeated.
    #[arg(long, env = "WEATHER_SEED")]
    pub seed: Option<u64>,

    /// Number of independent sensors, `sensor-1` .. `sensor-N`.
    #[arg(long, env = "WEATHER_SENSORS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sensors: u32,

    #[command(flatten)]
    pub progress: ProgressArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,
}

impl Config {
    pub fn sensor_ids(&self) -> Vec<String> {
        (1..=self.sensors).map(|i| format!("sensor-{i}")).collect()
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        Ok(_) => Err("the rate must be 0 (as fast as possible) or a positive number of readings per second".into()),
        Err(e) => Err(format!("`{s}` is not a number: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walkthrough's behaviour is the default: one sensor, one reading per second, forever.
    #[test]
    fn defaults_are_the_walkthroughs() {
        let c = Config::try_parse_from(["weather-producer"]).unwrap();
        assert_eq!((c.topic.as_str(), c.rate, c.count, c.sensors), ("weather", 1.0, None, 1));
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.sensor_ids(), ["sensor-1"]);
    }

    /// A bad flag names the flag and says why.
    #[test]
    fn bad_flags_are_named() {
        for (args, flag) in [
            (vec!["--rate", "-1"], "--rate"),
            (vec!["--rate", "fast"], "--rate"),
            (vec!["--count", "0"], "--count"),
            (vec!["--sensors", "0"], "--sensors"),
            (vec!["-X", "acks"], "-X"),
        ] {
            let err = Config::try_parse_from(std::iter::once("weather-producer").chain(args)).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }
}
