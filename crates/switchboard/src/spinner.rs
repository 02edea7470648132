//! A spinner on standard error while a command waits for a slow answer (a probe can take
//! seconds). It is drawn only when standard error is a terminal, so logs, pipes and tests never
//! receive its control characters.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running spinner; dropping it stops it and erases its line.
pub struct Spinner {
    /// Dropping the sender is the stop signal: the drawing thread sees the channel close.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Starts drawing `message` after a turning bar, or does nothing when standard error is not
    /// a terminal.
    pub fn start(message: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self {
                stop: None,
                thread: None,
            };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let message = message.to_owned();
        // A plain thread rather than a task: it must keep turning while the async runtime's
        // workers are busy, and it needs nothing from the runtime.
        let thread = std::thread::spawn(move || {
            const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
            let mut stderr = std::io::stderr();
            for frame in FRAMES.iter().cycle() {
                let _ = write!(stderr, "\r{frame} {message}");
                let _ = stderr.flush();
                match stopped.recv_timeout(Duration::from_millis(100)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            // Carriage return, then erase the line (ECMA-48 EL, "CSI 2 K").
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        });
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops it and erases its line before the caller prints.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
