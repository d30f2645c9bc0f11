//! Child processes for tests that need separate OS processes (each with its own runtime,
//! connections and committer). A test re-executes its own binary to run one ignored test
//! function, the child, with `EVS_TEST_CHILD` naming its role:
//!
//! ```ignore
//! let mut kids = Children::new();
//! kids.spawn("child", "writer", &[("EVS_TEST_URL", url)]);   // runs `fn child()` again
//! while let Some((i, line)) = kids.next_line() { ... }         // its `report` lines
//! kids.wait_all();                                             // panics if one failed
//! ```
//! A child reports to its parent with `report` (a line on stdout with a prefix that the
//! test harness's own output never has) and may wait for the parent's go with
//! `wait_for_parent`; its stderr (a panic's message) goes to the test's output.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};

/// The variable that names a child's role (absent in the parent).
pub const ROLE: &str = "EVS_TEST_CHILD";
const PREFIX: &str = "EVS-CHILD ";

/// The role this process runs as; panics in a run that is not a child's.
pub fn role() -> String {
    std::env::var(ROLE).unwrap_or_else(|_| {
        panic!("{ROLE} is not set: this test is a child process that its parent test starts")
    })
}

/// A variable the parent passed to the child; panics if it is missing or not a number.
pub fn number(name: &str) -> u64 {
    let v = std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    v.parse()
        .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
}

/// Sends one line to the parent.
pub fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{PREFIX}{line}").expect("reporting to the parent");
    out.flush().expect("reporting to the parent");
}

/// Waits until the parent says go (one line on stdin).
pub fn wait_for_parent() {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .expect("waiting for the parent");
}

struct Kid {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    /// Killed by the parent on purpose.
    killed: bool,
}

/// The children of one test; every line they report arrives on one channel.
pub struct Children {
    kids: Vec<Kid>,
    tx: Sender<(usize, Option<String>)>,
    rx: Receiver<(usize, Option<String>)>,
    open: usize,
}

impl Default for Children {
    fn default() -> Self {
        Self::new()
    }
}

impl Children {
    pub fn new() -> Children {
        let (tx, rx) = channel();
        Children {
            kids: Vec::new(),
            tx,
            rx,
            open: 0,
        }
    }

    /// Starts the test binary again, running only the ignored test `test` as `role`, with
    /// these variables. Returns the child's index.
    pub fn spawn(&mut self, test: &str, role: &str, env: &[(&str, String)]) -> usize {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut cmd = Command::new(exe);
        cmd.args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting child {role}: {e}"));
        let index = self.kids.len();
        let out = child.stdout.take().expect("piped stdout");
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                // Not only at the start of a line: the harness prints `test child ... `
                // without a newline before the child's first line.
                if let Some(at) = line.find(PREFIX) {
                    let _ = tx.send((index, Some(line[at + PREFIX.len()..].to_owned())));
                }
            }
            let _ = tx.send((index, None));
        });
        let stdin = child.stdin.take();
        self.kids.push(Kid {
            name: format!("{role} (pid {})", child.id()),
            child,
            stdin,
            killed: false,
        });
        self.open += 1;
        index
    }

    /// The next line any child reported, with the child's index; `None` once every child's
    /// output has ended.
    pub fn next_line(&mut self) -> Option<(usize, String)> {
        while self.open > 0 {
            match self.rx.recv().expect("the children's readers") {
                (i, Some(line)) => return Some((i, line)),
                (_, None) => self.open -= 1,
            }
        }
        None
    }

    /// Tells child `i` to go on (a line on its stdin).
    pub fn go(&mut self, i: usize) {
        let kid = &mut self.kids[i];
        let stdin = kid.stdin.as_mut().expect("the child's stdin");
        writeln!(stdin, "go").unwrap_or_else(|e| panic!("telling {} to go on: {e}", kid.name));
        stdin.flush().expect("telling a child to go on");
    }

    /// Kills child `i` at once (SIGKILL) and waits for it: a crash in the middle of
    /// whatever it was doing.
    pub fn kill(&mut self, i: usize) {
        let kid = &mut self.kids[i];
        kid.stdin.take();
        kid.child
            .kill()
            .unwrap_or_else(|e| panic!("killing {}: {e}", kid.name));
        let _ = kid.child.wait();
        // Its exit status is a kill, which `wait_all` must not count as a failure.
        kid.killed = true;
    }

    pub fn name(&self, i: usize) -> &str {
        &self.kids[i].name
    }

    pub fn len(&self) -> usize {
        self.kids.len()
    }

    /// Waits for every child to exit; panics naming those that failed.
    pub fn wait_all(&mut self) {
        let mut failed = Vec::new();
        for kid in &mut self.kids {
            kid.stdin.take();
            let status = kid.child.wait().expect("waiting for a child");
            if !status.success() && !kid.killed {
                failed.push(format!("{}: {status}", kid.name));
            }
        }
        assert!(failed.is_empty(), "child processes failed: {failed:?}");
    }
}

impl Drop for Children {
    /// A parent that fails early does not leave its children running.
    fn drop(&mut self) {
        for kid in &mut self.kids {
            if let Ok(None) = kid.child.try_wait() {
                let _ = kid.child.kill();
                let _ = kid.child.wait();
            }
        }
    }
}
