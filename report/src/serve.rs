//! `--serve`: the report as a live page over HTTP, until Ctrl-C or SIGTERM.
//!
//! `GET /` is the page that [`crate::page`] draws, with its body in a `<div id="live">` and a
//! small inline script; `GET /events` sends each new drawing's body as a server-sent event,
//! which the script swaps in: the tables and charts update without a reload, and the page
//! loads nothing from anywhere else. The table is followed by [`crate::live`] on a thread of
//! its own; the server stops when that does (asked to, or failed).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;
use weather_common::shutdown::Stop;

use crate::config::Settings;
use crate::live;
use crate::summary::Report;

/// The latest drawing; `None` until the topic is read to its end at start.
type Latest = watch::Receiver<Option<Arc<LivePage>>>;

/// Binds `address`, follows the topic and serves its page until `shutdown`; returns the report
/// of the table as last seen.
pub async fn run(
    address: String,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Report> {
    // Bound first: a taken or mistyped address fails at once, before the topic is read.
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot serve on `{address}` (--serve takes HOST:PORT, e.g. 127.0.0.1:8080)"))?;
    let local = listener.local_addr().context("the address served on")?;
    let (drawings, latest) = watch::channel(None);
    let stop = Stop::when(shutdown);
    let follower = {
        let stop = stop.clone();
        // Drawing ids unique across runs too: a page left open from an earlier run, reconnecting,
        // never takes this run's drawing for the one it shows.
        let run = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let mut number = 0u64;
        // A blocking poll on a thread of its own is the fastest way to drain librdkafka. When it
        // returns, `drawings` is dropped: the event streams end, and so does the server.
        tokio::task::spawn_blocking(move || {
            live::follow(&settings, &stop, |page| {
                number += 1;
                drawings.send_replace(Some(Arc::new(LivePage::new(format!("{run}.{number}"), &page)?)));
                Ok(())
            })
        })
    };
    tracing::info!("serving the live report on http://{local}/ (Ctrl-C stops)");
    let app = Router::new().route("/", get(page)).route("/events", get(events)).with_state(latest.clone());
    let mut ended = latest;
    let served =
        axum::serve(listener, app).with_graceful_shutdown(async move { while ended.changed().await.is_ok() {} }).await;
    // The server only returns early on an error of its own: the follower is then stopped too.
    stop.request();
    let report = follower.await.context("the report thread panicked")?;
    served.with_context(|| format!("serving on {local}"))?;
    report
}

/// One drawing, as served.
#[derive(Debug)]
pub struct LivePage {
    /// Unique to the drawing, also across runs (the run's start time and a count).
    pub id: String,
    /// The whole page, for `GET /`.
    pub document: Bytes,
    /// What is inside its `<div id="live">`, for the event that brings it.
    pub body: String,
}

impl LivePage {
    /// The live page of `page`, a whole document as [`crate::page::render`] draws it.
    pub fn new(id: String, page: &str) -> anyhow::Result<LivePage> {
        let unexpected = || anyhow::anyhow!("the drawn page has no <body>…</body> to serve live (a bug)");
        let (head, rest) = page.split_once("<body>\n").ok_or_else(unexpected)?;
        let (body, tail) = rest.rsplit_once("</body>").ok_or_else(unexpected)?;
        let document = format!(
            "{head}<body>\n<p id=\"live-status\" class=\"note\" style=\"float: right; margin: .3rem 0\">○ connecting</p>\n\
             <div id=\"live\" data-drawing=\"{id}\">\n{body}</div>\n<script>{SCRIPT}</script>\n</body>{tail}"
        );
        Ok(LivePage { id, document: Bytes::from(document), body: body.to_string() })
    }
}

/// Swaps in each drawing the server sends (a connection is first sent the current one, which is
/// left alone if it is already shown), and says in the corner whether the page is live.
const SCRIPT: &str = r##"
(() => {
  const live = document.getElementById("live");
  const status = document.getElementById("live-status");
  const events = new EventSource("events");
  events.addEventListener("page", (event) => {
    if (event.lastEventId !== live.dataset.drawing) {
      live.innerHTML = event.data;
      live.dataset.drawing = event.lastEventId;
      say("● live, updated " + new Date().toLocaleTimeString(), true);
    }
  });
  events.onopen = () => say("● live", true);
  events.onerror = () => say("○ not live: reconnecting to the report", false);
  function say(text, isLive) {
    status.textContent = text;
    status.style.color = isLive ? "#1a7f37" : "#b35900";
  }
})();
"##;

/// `GET /`: the page, once the topic has been read to its end at start.
async fn page(State(mut latest): State<Latest>) -> Response {
    let Some(page) = current(&mut latest).await else { return stopped() };
    let headers = [(CONTENT_TYPE, "text/html; charset=utf-8"), (CACHE_CONTROL, "no-store")];
    (headers, page.document.clone()).into_response()
}

/// `GET /events`: the current drawing, then each new one, as `page` events.
async fn events(State(latest): State<Latest>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = futures_util::stream::unfold((latest, true), |(mut latest, first)| async move {
        let page = if first { current(&mut latest).await } else { next(&mut latest).await }?;
        let event = Event::default().event("page").id(&page.id).data(&page.body);
        Some((Ok(event), (latest, false)))
    });
    // Comments now and then keep proxies from closing a quiet stream.
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The latest drawing, waiting for the first; `None` once the report stopped.
async fn current(latest: &mut Latest) -> Option<Arc<LivePage>> {
    latest.wait_for(Option::is_some).await.ok()?.clone()
}

/// The next drawing after the one last seen; `None` once the report stopped.
async fn next(latest: &mut Latest) -> Option<Arc<LivePage>> {
    latest.changed().await.ok()?;
    latest.borrow_and_update().clone()
}

fn stopped() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the report stopped: see its log\n").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Read;
    use crate::table::tests::week;
    use crate::table::Table;

    fn drawn() -> String {
        let mut table = Table::default();
        for (offset, id) in (1..=3).enumerate() {
            let a = week("sensor-1", id, 100 + id as i64);
            table.apply(0, offset as i64, Some(&a.key.to_json()), Some(&a.to_json()));
        }
        crate::page::render(&Report::new("agg", Read::default(), table, None)).unwrap()
    }

    /// The live page is the drawn page with its body inside `<div id="live">` (what the events
    /// carry), and a script that listens to the events; it refers to nothing outside itself.
    #[test]
    fn the_drawn_body_is_what_is_swapped() {
        let page = drawn();
        let live = LivePage::new("7.1".into(), &page).unwrap();
        let document = std::str::from_utf8(&live.document).unwrap();
        let (head, _) = page.split_once("<body>").unwrap();
        assert!(document.starts_with(head) && document.ends_with("</body>\n</html>\n"), "{document}");
        assert!(live.body.starts_with("<h1>") && live.body.contains("<figure class=\"chart temperature\""));
        assert!(document.contains(&format!("<div id=\"live\" data-drawing=\"7.1\">\n{}</div>\n<script>", live.body)));
        assert!(document.contains("new EventSource(\"events\")") && document.contains("addEventListener(\"page\""));
        assert_eq!(document.matches("<script").count(), 1, "one script, inline");
        assert!(
            !document.contains(" src=") && !document.contains("<link") && !document.contains("url("),
            "self-contained"
        );
    }

    /// A page drawn otherwise than expected is an error, not a page served without its body.
    #[test]
    fn a_page_without_a_body_is_an_error() {
        let err = LivePage::new("1.1".into(), "<html>no body</html>").unwrap_err().to_string();
        assert!(err.contains("<body>"), "{err}");
    }

    /// An event stream starts with the current drawing, then brings each new one, and ends
    /// when the report stops.
    #[tokio::test]
    async fn events_bring_each_drawing_and_end_with_the_report() {
        use axum::body::Body;
        use futures_util::StreamExt;
        let (drawings, latest) = watch::channel(None);
        drawings.send_replace(Some(Arc::new(LivePage::new("1.1".into(), &drawn()).unwrap())));
        let response = events(State(latest)).await.into_response();
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        let mut body = Body::into_data_stream(response.into_body());
        let mut text = String::new();
        let mut read_until = async |end: &str| {
            while !text.contains(end) {
                text.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
            }
        };
        read_until("id: 1.1\n").await;
        drawings.send_replace(Some(Arc::new(LivePage::new("1.2".into(), &drawn()).unwrap())));
        read_until("id: 1.2\n").await;
        assert_eq!(text.matches("event: page\n").count(), 2, "{text}");
        assert!(text.contains("data: <h1>Weather averages from agg</h1>\n"), "{text}");
        drop(drawings);
        let mut rest = body.map(|chunk| chunk.unwrap());
        while let Some(chunk) = rest.next().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert_eq!(text.matches("event: page\n").count(), 2, "the stream ended with the report");
    }
}
