//! Reading secrets for the CLI: from standard input, a named environment
//! variable, or a prompt with echo off. Never from the command line, where
//! they would land in shell history and the process list.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use secrecy::SecretString;

#[derive(Debug, Clone, clap::Args)]
pub struct SecretArgs {
    /// Read the secret from the first line of standard input.
    #[arg(long, conflicts_with = "secret_env")]
    pub secret_stdin: bool,
    /// Read the secret from this environment variable (its name, not its value).
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
}

impl SecretArgs {
    pub fn read(&self, what: &str) -> anyhow::Result<SecretString> {
        let value = if self.secret_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the secret from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_string()
        } else if let Some(var) = &self.secret_env {
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?
        } else if std::io::stdin().is_terminal() {
            rpassword::prompt_password(format!("{what}: ")).context("reading the secret")?
        } else {
            bail!(super::UsageError(format!(
                "no {what} given: pass --secret-stdin or --secret-env VAR"
            )));
        };
        if value.is_empty() {
            bail!(super::UsageError(format!("the {what} is empty")));
        }
        Ok(SecretString::from(value))
    }
}
