//! What a user sets on the sensor: every flag has `--help` text and an environment variable.
//! The raw command line ([`Cli`]) is checked into [`Settings`] before any work starts, so that
//! a bad flag is reported by name, at once.

use std::fmt;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use weather_common::kafka::KafkaArgs;
use weather_common::meter::ProgressArgs;
use weather_common::metrics::MetricsArgs;

/// The weather sensor: publishes a bounded random walk of readings (one per simulated day)
/// to a Kafka topic, as JSON keyed by sensor id. On restart each sensor continues where the
/// topic left it.
#[derive(Parser, Debug, Clone)]
#[command(name = "weather-producer", version)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Topic to publish to.
    #[arg(short = 't', long, env = "WEATHER_TOPIC", default_value = "weather")]
    pub topic: String,

    /// Readings per second per sensor (the walkthrough sent 1); 0 sends as fast as the
    /// broker takes them.
    #[arg(long, env = "WEATHER_RATE", default_value_t = 1.0, allow_negative_numbers = true)]
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

/// The checked settings of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kafka: KafkaArgs,
    pub topic: String,
    pub pace: Pace,
    /// Readings per sensor, then stop; `None`: until stopped.
    pub count: Option<u64>,
    /// `None`: a random seed, chosen (and logged) when the run starts.
    pub seed: Option<u64>,
    /// `sensor-1` .. `sensor-N`.
    pub sensor_ids: Vec<String>,
    pub progress: ProgressArgs,
    pub metrics: MetricsArgs,
}

/// How fast each sensor sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the broker takes the readings (`--rate 0`).
    AsFastAsPossible,
    /// One reading per sensor every this long, from the `rate` readings per second asked for.
    Every { interval: Duration, rate: f64 },
}

impl Pace {
    /// The pace of `rate` readings per second per sensor (0: as fast as possible), or why there
    /// is none.
    pub fn of_rate(rate: f64) -> Result<Pace, String> {
        if rate == 0.0 {
            return Ok(Pace::AsFastAsPossible);
        }
        if !(rate.is_finite() && rate > 0.0) {
            return Err("the rate must be 0 (as fast as possible) or a positive number of readings per second".into());
        }
        // A rate so low that its interval is no Duration (beyond 584 billion years) is a typo.
        let interval = Duration::try_from_secs_f64(1.0 / rate).map_err(|_| {
            format!("{rate} readings per second is one reading every {:e} s: too slow to wait for", 1.0 / rate)
        })?;
        Ok(Pace::Every { interval, rate })
    }

    /// How long a round of readings (one per sensor) takes at the least; `None`: no waiting.
    pub fn interval(&self) -> Option<Duration> {
        match self {
            Pace::AsFastAsPossible => None,
            Pace::Every { interval, .. } => Some(*interval),
        }
    }
}

impl fmt::Display for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pace::AsFastAsPossible => write!(f, "as fast as possible"),
            Pace::Every { rate, .. } => write!(f, "{rate} reading/s each"),
        }
    }
}

impl Cli {
    /// The checked settings of the command line; a bad flag is named, with why.
    pub fn settings(self) -> Result<Settings, clap::Error> {
        let invalid = |message: String| Cli::command().error(ErrorKind::InvalidValue, message);
        let pace = Pace::of_rate(self.rate).map_err(|e| invalid(format!("--rate: {e}")))?;
        Ok(Settings {
            kafka: self.kafka,
            topic: self.topic,
            pace,
            count: self.count,
            seed: self.seed,
            sensor_ids: (1..=self.sensors).map(|i| format!("sensor-{i}")).collect(),
            progress: self.progress,
            metrics: self.metrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Result<Settings, clap::Error> {
        Cli::try_parse_from(std::iter::once("weather-producer").chain(args.iter().copied()))?.settings()
    }

    /// The walkthrough's behaviour is the default: one sensor, one reading per second, forever.
    #[test]
    fn defaults_are_the_walkthroughs() {
        let s = settings(&[]).unwrap();
        let every_second = Pace::Every { interval: Duration::from_secs(1), rate: 1.0 };
        assert_eq!((s.topic.as_str(), s.pace, s.count, s.seed), ("weather", every_second, None, None));
        assert_eq!(s.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(s.sensor_ids, ["sensor-1"]);
    }

    /// The flags become the settings: a rate of 0 is no pacing, a rate its interval, the
    /// sensors their ids.
    #[test]
    fn flags_become_settings() {
        let s = settings(&["--rate", "0", "--count", "3", "--seed", "7", "--sensors", "3"]).unwrap();
        assert_eq!((s.pace, s.count, s.seed), (Pace::AsFastAsPossible, Some(3), Some(7)));
        assert_eq!(s.pace.interval(), None);
        assert_eq!(s.sensor_ids, ["sensor-1", "sensor-2", "sensor-3"]);
        let s = settings(&["--rate", "4"]).unwrap();
        assert_eq!(s.pace.interval(), Some(Duration::from_millis(250)));
        assert_eq!(s.pace.to_string(), "4 reading/s each");
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
            // One reading every 1e20 s: no Duration holds that (it used to panic).
            (vec!["--rate", "1e-20"], "--rate"),
        ] {
            let err = settings(&args).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
    }
}
