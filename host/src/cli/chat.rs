//! `airlock chat` (one turn of a conversation), `airlock conversation`
//! (list, show, rm) and the chat options of a connection.

use std::io::Write as _;

use clap::{Args, Subcommand, ValueEnum};

use super::{UsageError, block_on, output};
use airlock::Airlock;
use airlock::service::{ChatEvent, ChatInput, ChatOptions, ProjectFilter};

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Connection name or id (an AI provider plugin).
    pub connection: String,
    /// The message to send.
    pub message: String,
    /// Continue this conversation (its id); a new one is started otherwise.
    #[arg(long)]
    pub conversation: Option<String>,
    /// Extra system text for this turn (after the connection's domain
    /// prompt in a new conversation).
    #[arg(long)]
    pub system: Option<String>,
    /// Print the answer as it arrives.
    #[arg(long)]
    pub stream: bool,
    /// Model to use instead of the connection's.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Resolve and audit the call for this project. A conversation belongs
    /// to the project it was started for: continue it with the same one.
    #[arg(long)]
    pub project: Option<String>,
    /// Print the answer, conversation id, usage and redaction counts as JSON.
    #[arg(long, conflicts_with = "stream")]
    pub json: bool,
}

pub fn run(airlock: &Airlock, args: ChatArgs) -> anyhow::Result<()> {
    let input = ChatInput {
        message: args.message,
        conversation: args.conversation,
        system: args.system,
        model: args.model,
        temperature: args.temperature,
        max_tokens: args.max_tokens,
        project: args.project,
    };
    if !args.stream {
        let answer = block_on(airlock.chat(&args.connection, input))?;
        return output::emit(args.json, &answer, |answer| {
            println!("{}", answer.content);
            eprintln!("conversation: {}", answer.conversation_id);
        });
    }
    block_on(async {
        let mut events = airlock.chat_stream(&args.connection, input).await?;
        let mut stdout = std::io::stdout();
        while let Some(event) = events.next().await {
            match event? {
                ChatEvent::Delta(text) => {
                    stdout.write_all(text.as_bytes())?;
                    stdout.flush()?;
                }
                ChatEvent::Done(answer) => {
                    println!();
                    eprintln!("conversation: {}", answer.conversation_id);
                }
            }
        }
        Ok(())
    })
}

/// Which projects' conversations a command touches: every project's unless
/// narrowed (the CLI acts as the operator).
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// Only conversations started for this project.
    #[arg(long, conflicts_with = "no_project")]
    pub project: Option<String>,
    /// Only conversations started without a project.
    #[arg(long)]
    pub no_project: bool,
}

impl ProjectArgs {
    fn filter(self) -> ProjectFilter {
        match (self.project, self.no_project) {
            (Some(project), _) => ProjectFilter::Only(Some(project)),
            (None, true) => ProjectFilter::Only(None),
            (None, false) => ProjectFilter::Any,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ConversationCommand {
    /// List conversations, most recently active first.
    List {
        /// Only this connection's.
        #[arg(long)]
        connection: Option<String>,
        #[command(flatten)]
        projects: ProjectArgs,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Show a conversation's messages as stored (not redacted).
    Show {
        id: String,
        #[command(flatten)]
        projects: ProjectArgs,
        #[arg(long)]
        json: bool,
    },
    /// Delete a conversation and the plugin state kept for it.
    Rm {
        id: String,
        #[command(flatten)]
        projects: ProjectArgs,
    },
}

pub fn run_conversation(airlock: &Airlock, cmd: ConversationCommand) -> anyhow::Result<()> {
    match cmd {
        ConversationCommand::List {
            connection,
            projects,
            limit,
            json,
        } => {
            let list = airlock.conversations(connection.as_deref(), projects.filter(), limit)?;
            let names = output::connection_names(airlock)?;
            output::emit(json, &list, |list| {
                let columns = ["ID", "UPDATED", "CONNECTION", "PROJECT", "TITLE"];
                output::table(&columns, list, |c| {
                    vec![
                        c.id.clone(),
                        c.updated_at.clone(),
                        output::named(&names, &c.connection_id).to_string(),
                        c.project.clone().unwrap_or_else(|| "-".into()),
                        c.title.clone(),
                    ]
                });
            })
        }
        ConversationCommand::Show { id, projects, json } => {
            let (record, messages) = airlock.conversation(&id, projects.filter())?;
            let doc = serde_json::json!({
                "conversation": record,
                "messages": messages,
            });
            output::emit(json, &doc, |_| {
                println!("{} ({})", record.title, record.id);
                for m in &messages {
                    println!("\n[{}] {}", m.role.as_str(), m.content);
                }
            })
        }
        ConversationCommand::Rm { id, projects } => {
            airlock.delete_conversation(&id, projects.filter())?;
            println!("deleted conversation {id}");
            Ok(())
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct ChatOptionsArgs {
    pub name: String,
    /// Replace PII with placeholders before sending (on by default).
    #[arg(long, value_enum)]
    pub redaction: Option<OnOff>,
    /// The first system message of every new conversation.
    #[arg(long, conflicts_with = "clear_system_prompt")]
    pub system_prompt: Option<String>,
    #[arg(long)]
    pub clear_system_prompt: bool,
}

/// `airlock connection chat-options`: show, or change and show.
pub fn run_options(airlock: &Airlock, args: ChatOptionsArgs) -> anyhow::Result<()> {
    let mut options = airlock.chat_options(&args.name)?;
    let changed =
        args.redaction.is_some() || args.system_prompt.is_some() || args.clear_system_prompt;
    if let Some(r) = args.redaction {
        options.redaction = matches!(r, OnOff::On);
    }
    if let Some(p) = args.system_prompt {
        if p.trim().is_empty() {
            anyhow::bail!(UsageError(
                "--system-prompt is empty; use --clear-system-prompt".into()
            ));
        }
        options.system_prompt = Some(p);
    }
    if args.clear_system_prompt {
        options.system_prompt = None;
    }
    let options: ChatOptions = if changed {
        airlock.set_chat_options(&args.name, &options)?
    } else {
        options
    };
    println!(
        "redaction:     {}",
        if options.redaction { "on" } else { "off" }
    );
    println!(
        "system prompt: {}",
        options.system_prompt.as_deref().unwrap_or("(none)")
    );
    Ok(())
}
