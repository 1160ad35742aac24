//! Headless Chromium from Debian's packages, driven over the DevTools protocol (a websocket):
//! a page opened and loaded, JavaScript evaluated in it, a condition on its document awaited.
//! Chromium picks its debugging port itself and says which (no port to race for), keeps its
//! profile in a temporary directory, fetches nothing of its own, and is stopped when dropped.
//!
//! The binary is `CHROMIUM_BIN`, else `chromium` on `PATH`; a missing one fails the test with
//! the command that installs it (`scripts/test` does).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long Chromium may take to start, and a page to load, on a busy machine.
const START: Duration = Duration::from_secs(60);

/// A running headless Chromium.
pub struct Chromium {
    child: Child,
    socket: WebSocket<TcpStream>,
    next_id: u64,
    /// Events that came while a command's answer was awaited.
    events: VecDeque<Value>,
    /// What Chromium wrote on stderr, for failures.
    log: Arc<Mutex<String>>,
    _profile: tempfile::TempDir,
}

/// A page of a [`Chromium`], attached to over the browser's websocket.
pub struct Tab<'a> {
    browser: &'a mut Chromium,
    session: String,
}

impl Chromium {
    pub fn start() -> Chromium {
        let profile = tempfile::Builder::new().prefix("chromium").tempdir().expect("creating a profile directory");
        let mut command = Command::new(binary());
        command
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            .args(["--disable-component-update", "--no-first-run", "--hide-scrollbars", "--window-size=1100,1400"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--remote-debugging-port=0", "about:blank"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A group of its own: its renderer and helper processes are stopped with it.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().expect("starting chromium");
        let log = Arc::new(Mutex::new(String::new()));
        let (found, address) = mpsc::channel();
        let stderr = child.stderr.take().expect("chromium's stderr");
        let lines = Arc::clone(&log);
        // Read to the end, so that Chromium never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = found.send(url.to_string());
                }
                let mut log = lines.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = address.recv_timeout(START).unwrap_or_else(|_| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not say where it listens within {START:?}; its log:\n{}", log.lock().unwrap())
        });
        let host = url.strip_prefix("ws://").and_then(|rest| rest.split('/').next()).expect("a ws:// address");
        let stream = TcpStream::connect(host).expect("connecting to chromium's debugging port");
        let (socket, _) = tungstenite::client(url.as_str(), stream).expect("opening chromium's websocket");
        Chromium { child, socket, next_id: 1, events: VecDeque::new(), log, _profile: profile }
    }

    /// Opens `url` in a new page and waits until it has loaded.
    pub fn open(&mut self, url: &str) -> Tab<'_> {
        let deadline = Instant::now() + START;
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }), deadline);
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
            deadline,
        );
        let session = attached["sessionId"].as_str().expect("a session id").to_string();
        self.call(Some(&session), "Page.enable", json!({}), deadline);
        let navigated = self.call(Some(&session), "Page.navigate", json!({ "url": url }), deadline);
        assert!(navigated.get("errorText").is_none(), "opening {url}: {navigated}");
        self.event(&session, "Page.loadEventFired", deadline);
        Tab { browser: self, session }
    }

    /// Sends a command (to a page's `session`, or to the browser) and returns its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value, deadline: Instant) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            command["sessionId"] = session.into();
        }
        self.socket.send(Message::text(command.to_string())).unwrap_or_else(|e| panic!("sending {method}: {e}"));
        loop {
            let message = self.receive(deadline, method);
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method}: {error}");
                }
                return message["result"].clone();
            }
            if message.get("method").is_some() {
                self.events.push_back(message);
            }
        }
    }

    /// Waits for the event `method` of a page.
    fn event(&mut self, session: &str, method: &str, deadline: Instant) -> Value {
        let matches = |e: &Value| e["method"] == method && e["sessionId"] == session;
        if let Some(at) = self.events.iter().position(matches) {
            return self.events.remove(at).expect("an event found");
        }
        loop {
            let message = self.receive(deadline, method);
            if matches(&message) {
                return message;
            }
        }
    }

    /// The next message from the browser, by `deadline`.
    fn receive(&mut self, deadline: Instant, awaited: &str) -> Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "chromium: no {awaited} in time; its log:\n{}", self.log());
            self.socket.get_ref().set_read_timeout(Some(left)).expect("setting a read timeout");
            match self.socket.read() {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).expect("DevTools messages are JSON"),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("reading from chromium while awaiting {awaited}: {e}; its log:\n{}", self.log()),
            }
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Tab<'_> {
    /// The value of a JavaScript expression in the page (a promise's, once it settles).
    pub fn evaluate(&mut self, expression: &str) -> Value {
        self.evaluate_by(expression, Instant::now() + START).unwrap_or_else(|e| panic!("evaluating {expression}: {e}"))
    }

    /// The value, or what the expression threw.
    fn evaluate_by(&mut self, expression: &str, deadline: Instant) -> Result<Value, String> {
        let params = json!({ "expression": expression, "awaitPromise": true, "returnByValue": true });
        let result = self.browser.call(Some(&self.session), "Runtime.evaluate", params, deadline);
        match result.get("exceptionDetails") {
            Some(exception) => {
                Err(exception["exception"]["description"].as_str().unwrap_or("an exception").to_string())
            }
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Waits until the JavaScript expression `condition` is truthy in the page, looking again at
    /// each change of the document, and returns its value; an error after `timeout`.
    pub fn wait_for(&mut self, condition: &str, timeout: Duration) -> Result<Value, String> {
        let quoted = serde_json::to_string(condition).expect("a string");
        let ms = timeout.as_millis();
        let expression = format!(
            "new Promise((resolve, reject) => {{
               const value = () => {{ try {{ return ({condition}); }} catch (e) {{ return undefined; }} }};
               const check = () => {{
                 const v = value();
                 if (v) {{ observer.disconnect(); clearTimeout(timer); resolve(v); }}
               }};
               const observer = new MutationObserver(check);
               const timer = setTimeout(() => {{
                 observer.disconnect();
                 reject(new Error('not met within {ms} ms: ' + {quoted}));
               }}, {ms});
               observer.observe(document, {{ subtree: true, childList: true, characterData: true, attributes: true }});
               check();
             }})"
        );
        self.evaluate_by(&expression, Instant::now() + timeout + Duration::from_secs(10))
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The whole group: the browser and the processes it started.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CHROMIUM_BIN`, else `chromium` on `PATH`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM_BIN") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("Debian's chromium is not installed: `apt-get install chromium` (scripts/test installs it), or set CHROMIUM_BIN")
        })
}
