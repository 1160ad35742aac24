//! The weather sensor.
//!
//! - [`walk`]: the pure, seeded bounded random walk.
//! - [`resume`]: finds where each sensor left off in the topic.
//! - [`publish`]: sends readings to Kafka, paced, with delivery reports and a final flush.
//! - [`config`]: the command line.

pub mod config;
pub mod publish;
pub mod resume;
pub mod walk;

use std::collections::HashSet;
use std::future::Future;

use anyhow::Context;
use weather_common::kafka;
use weather_common::shutdown::Stop;

pub use config::Config;
pub use publish::Sent;
use walk::Walk;

/// Runs the sensor until `count` readings per sensor are acknowledged or `shutdown` resolves;
/// either way everything sent is flushed to Kafka before it returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<Sent> {
    let stop = Stop::when(shutdown);
    tokio::task::spawn_blocking(move || run_blocking(&config, &stop)).await.context("the sensor thread panicked")?
}

fn run_blocking(config: &Config, stop: &Stop) -> anyhow::Result<Sent> {
    let seed = config.seed.unwrap_or_else(rand::random);
    if config.seed.is_none() {
        tracing::info!("random walk seed {seed} (pass --seed {seed} to repeat this run)");
    }
    let producer = publish::producer(&config.kafka).context("creating the Kafka producer")?;
    let client = kafka::metadata_client(&config.kafka).context("creating the Kafka client")?;
    let partitions = kafka::partitions(&client, &config.kafka, &config.topic)?;
    let watermarks = kafka::watermarks(&client, &config.topic, &partitions).context("reading the topic's offsets")?;
    let sensors: HashSet<String> = config.sensor_ids().into_iter().collect();
    let mut last = resume::last_readings(&client, &config.topic, &watermarks, &sensors)
        .context("reading where each sensor left off")?;
    drop(client);
    let mut walks: Vec<Walk> = config
        .sensor_ids()
        .into_iter()
        .map(|id| {
            let previous = last.remove(&id);
            if let Some(r) = &previous {
                tracing::info!("{id} continues after record_id {}", r.record_id);
            }
            Walk::resume(id, seed, previous)
        })
        .collect();
    tracing::info!(
        "sending to `{}` on {}: {} sensor(s), {}, {}",
        config.topic,
        config.kafka.bootstrap_servers,
        walks.len(),
        if config.rate > 0.0 { format!("{} reading(s)/s each", config.rate) } else { "as fast as possible".into() },
        config.count.map_or("until stopped".into(), |n| format!("{n} reading(s) each")),
    );
    let display = config.progress.display();
    Ok(publish::publish(producer, &config.topic, &mut walks, config.rate, config.count, display, stop)?)
}
