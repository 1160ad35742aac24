//! The weather sensor.
//!
//! - [`walk`]: the pure, seeded bounded random walk.
//! - [`resume`]: finds where each sensor left off in the topic.
//! - [`publish`]: sends readings to Kafka, paced, with delivery reports and a final flush.
//! - [`writers`]: notices another process writing the same sensor, and stops this one.
//! - [`config`]: the command line.

pub mod config;
pub mod publish;
pub mod resume;
pub mod walk;
pub mod writers;

use std::future::Future;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::Context;
use rdkafka::producer::{Producer, ThreadedProducer};
use weather_common::kafka::{self, Deliveries};
use weather_common::meter::counted;
use weather_common::shutdown::Stop;

pub use config::Config;
pub use publish::Sent;
use walk::Walk;
use writers::{Rival, Watch};

/// How often a running sensor looks at its partitions' tails for another writer.
const LOOK_INTERVAL: Duration = Duration::from_secs(5);

/// Runs the sensor until `count` readings per sensor are acknowledged or `shutdown` resolves;
/// either way everything sent is flushed to Kafka before it returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<Sent> {
    let _metrics = weather_common::metrics::serve(&config.metrics, "weather-producer").await?;
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
    let partitions = kafka::partitions_unless(&client, &config.kafka, &config.topic, stop)?;
    weather_common::metrics::health_of_job().connected();
    let watermarks = kafka::watermarks(&client, &config.topic, &partitions).context("reading the topic's offsets")?;
    let sensor_ids = config.sensor_ids();
    let placed = resume::placement(sensor_ids.iter().map(String::as_str), &partitions);
    let Some(mut last) = resume::last_readings(&client, &config.topic, &watermarks, &placed, stop)
        .context("reading where each sensor left off")?
    else {
        return Ok(Sent::default());
    };
    drop(client);
    let watch = Watch::new(&config.kafka, &config.topic, placed, &watermarks, &last)
        .context("creating the Kafka client that watches for another writer")?;
    let mut walks: Vec<Walk> = sensor_ids
        .into_iter()
        .map(|id| {
            let previous = last.remove(&id);
            if let Some(found) = &previous {
                let at = format!("partition {}, offset {}", found.partition, found.offset);
                match found.stray {
                    None => tracing::info!("{id} continues after record_id {} ({at})", found.last.record_id),
                    Some((offset, stray)) => tracing::warn!(
                        "{id} continues after its highest record_id {} ({at}); the newer reading at offset {offset} \
                         repeats record_id {stray} and is not where its walk stopped",
                        found.last.record_id
                    ),
                }
            }
            Walk::resume(id, seed, previous.map(|found| found.last))
        })
        .collect();
    tracing::info!(
        "sending to `{}` on {}: {}, {}, {}",
        config.topic,
        config.kafka.bootstrap_servers,
        counted(walks.len() as u64, "sensor"),
        if config.rate > 0.0 { format!("{} reading/s each", config.rate) } else { "as fast as possible".into() },
        config.count.map_or("until stopped".into(), |n| format!("{} each", counted(n, "reading"))),
    );
    let display = config.progress.display();
    let (running, watching) = mpsc::channel::<()>();
    let producer = Arc::new(producer);
    let watcher = {
        let (stop, producer) = (stop.clone(), producer.clone());
        std::thread::spawn(move || watch_while_running(watch, &producer, &watching, &stop))
    };
    let sent =
        publish::publish(&producer, &config.topic, &partitions, &mut walks, config.rate, config.count, display, stop);
    drop(running);
    let (mut watch, rival) =
        watcher.join().map_err(|_| anyhow::anyhow!("the thread watching for another writer panicked"))?;
    // A last look once everything is acknowledged: a short run (a history with --count) ends
    // before its first look, and must still see a live sensor writing beside it.
    let rival = match rival {
        Some(rival) => Some(rival),
        // A run that failed says why; the broker may not answer a look now.
        None if sent.is_err() => None,
        None => watch.look(|| producer.context().acknowledged(), true).unwrap_or_else(|e| {
            tracing::warn!("could not look for another writer of these sensors at the end: {e}");
            None
        }),
    };
    match rival {
        Some(rival) => Err(anyhow::anyhow!("{rival}")),
        None => Ok(sent?),
    }
}

/// Looks for another writer every [`LOOK_INTERVAL`] until `running` is dropped; on finding one,
/// stops the sensor (whose run then ends with the error that names it).
fn watch_while_running(
    mut watch: Watch,
    producer: &ThreadedProducer<Deliveries>,
    running: &mpsc::Receiver<()>,
    stop: &Stop,
) -> (Watch, Option<Rival>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = running.recv_timeout(LOOK_INTERVAL) {
        match watch.look(|| producer.context().acknowledged(), false) {
            Ok(Some(rival)) => {
                stop.request();
                return (watch, Some(rival));
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("looking for another writer of these sensors: {e}"),
        }
    }
    (watch, None)
}
