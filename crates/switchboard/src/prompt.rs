//! Reading what the user types: plain answers, and secrets that must not be echoed or passed
//! as arguments (where other local users could read them in the process list).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use zeroize::Zeroizing;

/// Whether standard input is a terminal, so questions can be asked.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads one line from standard input, without its line ending.
fn read_stdin_line() -> Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read standard input")?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

/// Reads a secret: the next line of standard input when `from_stdin` is set or standard input
/// is not a terminal, otherwise asked for at the terminal without echo. `what` names the
/// secret in errors.
pub fn secret(prompt: &str, what: &str, from_stdin: bool) -> Result<Zeroizing<String>> {
    let value = if from_stdin || !interactive() {
        read_stdin_line()?
    } else {
        Zeroizing::new(
            rpassword::prompt_password(prompt)
                .with_context(|| format!("cannot read the {what}"))?,
        )
    };
    if value.is_empty() {
        bail!("no {what} given");
    }
    Ok(value)
}

/// Asks for a new password twice at the terminal, or reads it once from standard input.
pub fn new_password(prompt: &str, from_stdin: bool) -> Result<Zeroizing<String>> {
    let first = secret(prompt, "password", from_stdin)?;
    if from_stdin || !interactive() {
        return Ok(first);
    }
    let second = secret("Repeat it: ", "password", false)?;
    if *first != *second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// Every remaining line of standard input.
pub fn stdin_lines() -> Result<Vec<Zeroizing<String>>> {
    let mut lines = Vec::new();
    for line in std::io::stdin().lock().lines() {
        lines.push(Zeroizing::new(line.context("cannot read standard input")?));
    }
    Ok(lines)
}

/// Asks a question at the terminal; an empty answer takes `default`. Without a terminal the
/// value had to be given as `flag`.
pub fn ask(question: &str, default: Option<&str>, flag: &str) -> Result<String> {
    if !interactive() {
        match default {
            Some(d) => return Ok(d.to_owned()),
            None => bail!("{flag} is required when standard input is not a terminal"),
        }
    }
    loop {
        match default {
            Some(d) => eprint!("{question} [{d}]: "),
            None => eprint!("{question}: "),
        }
        std::io::stderr().flush().ok();
        let answer = read_stdin_line()?;
        let answer = answer.trim();
        if !answer.is_empty() {
            return Ok(answer.to_owned());
        }
        if let Some(d) = default {
            return Ok(d.to_owned());
        }
    }
}

/// Asks a yes/no question at the terminal; only "y" or "yes" count as yes.
pub fn confirm(question: &str) -> Result<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let answer = read_stdin_line()?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
