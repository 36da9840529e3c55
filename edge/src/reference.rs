//! The configuration reference, `docs/configuration.md`, rendered from the
//! clap definitions the binaries parse, so it cannot drift from them.
//!
//! The flags are grouped the way the code groups them: one section per
//! `clap::Args` struct (the runtime's shared flags, each service's config,
//! the cloud link, …). For each binary the reference says which sections it
//! takes, and lists under a heading of its own the flags it takes beyond
//! them. The operator commands of `edge` follow, one table per command.
//!
//! The test at the bottom compares the rendering with the checked-in file
//! and fails on any difference, naming the first line that differs;
//! `EDGE_WRITE_DOCS=1` rewrites the file instead:
//!
//! ```sh
//! EDGE_WRITE_DOCS=1 cargo test -p edge --bin edge config_reference
//! ```
//!
//! Invariants:
//! - The rendering depends on the clap definitions only, never on the
//!   environment: defaults are clap's, not the current `EDGE_*` values.
//! - Every flag of every binary appears: in a section the binary is listed
//!   with (each of which it must take whole), or under the binary's own
//!   heading. A flag added anywhere changes the rendering.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use clap::{Arg, ArgAction, Command, CommandFactory};

use crate::cli;

/// Where the reference is, relative to the workspace root.
pub const PATH: &str = "docs/configuration.md";

/// The command that rewrites the reference.
pub const REGENERATE: &str = "EDGE_WRITE_DOCS=1 cargo test -p edge --bin edge config_reference";

/// Flags defined by one `clap::Args` struct, taken whole by some binaries.
pub struct Section {
    /// Heading; also what a [`Binary`] names it by.
    pub title: &'static str,
    /// What the flags are for, in a sentence or two.
    pub intro: &'static str,
    /// Where they are defined.
    pub source: &'static str,
    /// The struct's arguments, as `augment_args` adds them.
    pub command: Command,
}

impl Section {
    fn of<T: clap::Args>(title: &'static str, intro: &'static str, source: &'static str) -> Self {
        Section {
            title,
            intro,
            source,
            command: T::augment_args(Command::new(title)),
        }
    }
}

/// A program (or `edge` subcommand) that runs a server.
pub struct Binary {
    /// How it is invoked, e.g. `edge up` or `store-svc`.
    pub name: &'static str,
    /// Where its own flags are defined.
    pub source: &'static str,
    /// The command it parses.
    pub command: Command,
    /// Titles of the sections it takes whole.
    pub sections: &'static [&'static str],
}

/// Everything the reference is rendered from.
pub struct Reference {
    /// Flag groups, in the order they are shown.
    pub sections: Vec<Section>,
    /// The servers, in the order they are shown.
    pub binaries: Vec<Binary>,
    /// The `edge` command, whose subcommands other than the servers' are the
    /// operator commands.
    pub edge: Command,
}

const SHARED: &str = "Shared flags";
const STORE: &str = "store-svc";
const STORAGE: &str = "Bounded storage (store-svc)";
const INGEST: &str = "ingest-svc";
const CLIENT: &str = "Calls to store-svc (ingest-svc, sync-svc)";
const LINK: &str = "The cloud link (sync-svc, health-svc)";
const SYNC: &str = "sync-svc";
const HEALTH: &str = "health-svc";
const MESH: &str = "The services health-svc checks";
const CLOUD: &str = "The reference cloud";

/// The servers `edge` runs, found among its subcommands.
const SERVER_SUBCOMMANDS: [&str; 2] = ["up", "cloud"];

impl Reference {
    /// The binaries and sections of this workspace.
    pub fn of_workspace() -> Self {
        let edge = cli::Cli::command();
        // A subcommand that went missing renders as an empty command, and the
        // sections listed for it then fail the rendering.
        let subcommand = |name: &'static str| {
            edge.find_subcommand(name)
                .cloned()
                .unwrap_or_else(|| Command::new(name))
        };
        let sections = vec![
            Section::of::<edge_runtime::RuntimeArgs>(
                SHARED,
                "Every service binary and `edge up` take these.",
                "runtime/src/config.rs",
            ),
            Section::of::<store_svc::StoreConfig>(
                STORE,
                "The site database behind `edge.v1.ReadingsService` and `edge.v1.OperationsService`.",
                "store-svc/src/config.rs",
            ),
            Section::of::<store_svc::storage::StorageArgs>(
                STORAGE,
                "Retention, the storage budget and what happens when it is reached \
                 (see [storage](storage.md)).",
                "store-svc/src/storage/config.rs",
            ),
            Section::of::<ingest_svc::IngestConfig>(
                INGEST,
                "The door for sensor gateways, `edge.v1.IngestService`, and what it accepts.",
                "ingest-svc/src/config.rs, ingest-svc/src/validate.rs",
            ),
            Section::of::<edge_runtime::client::ClientArgs>(
                CLIENT,
                "Deadlines for the gRPC calls ingest-svc and sync-svc make to store-svc.",
                "runtime/src/client.rs",
            ),
            Section::of::<edge_cloud_link::CloudLinkArgs>(
                LINK,
                "Where the cloud is, and the reachability probe. sync-svc and \
                 health-svc take the same flags and each runs its own probe.",
                "cloud-link/src/config.rs, cloud-link/src/probe.rs",
            ),
            Section::of::<sync_svc::SyncConfig>(
                SYNC,
                "Store and forward: pushing the outbox to the cloud and pulling its \
                 changes back (see [store and forward](store-and-forward.md)).",
                "sync-svc/src/config.rs",
            ),
            Section::of::<health_svc::HealthConfig>(
                HEALTH,
                "The site's view of its link and of its own services, \
                 `edge.v1.CloudHealthService`.",
                "health-svc/src/config.rs",
            ),
            Section::of::<health_svc::MeshTargets>(
                MESH,
                "Only the `health-svc` binary takes these: `edge up` gives health-svc \
                 the real addresses of the services it runs.",
                "health-svc/src/config.rs",
            ),
            Section::of::<edge_cloud::CloudArgs>(
                CLOUD,
                "`edge cloud` serves the cloud contract (see [contracts](contracts.md)).",
                "cloud/src/config.rs",
            ),
        ];
        let binaries = vec![
            Binary {
                name: "edge up",
                source: "edge/src/cli.rs",
                command: subcommand("up"),
                sections: &[SHARED, STORE, STORAGE, INGEST, CLIENT, LINK, SYNC, HEALTH],
            },
            Binary {
                name: "store-svc",
                source: "store-svc/src/cli.rs",
                command: store_svc::Cli::command(),
                sections: &[SHARED, STORE, STORAGE],
            },
            Binary {
                name: "ingest-svc",
                source: "ingest-svc/src/cli.rs",
                command: ingest_svc::Cli::command(),
                sections: &[SHARED, INGEST, CLIENT],
            },
            Binary {
                name: "sync-svc",
                source: "sync-svc/src/cli.rs",
                command: sync_svc::Cli::command(),
                sections: &[SHARED, SYNC, LINK, CLIENT],
            },
            Binary {
                name: "health-svc",
                source: "health-svc/src/cli.rs",
                command: health_svc::Cli::command(),
                sections: &[SHARED, HEALTH, LINK, MESH],
            },
            Binary {
                name: "edge cloud",
                source: "edge/src/cli.rs",
                command: subcommand("cloud"),
                sections: &[CLOUD],
            },
        ];
        Reference {
            sections,
            binaries,
            edge,
        }
    }

    /// The reference as Markdown, or why it cannot be rendered (a binary
    /// listed with a section it does not take whole).
    pub fn render(&self) -> Result<String, String> {
        let mut out = String::new();
        out.push_str(HEADER);

        out.push_str("## Which binary takes which flags\n\n");
        out.push_str("| binary | flags |\n|---|---|\n");
        let mut own = Vec::new();
        for binary in &self.binaries {
            let mut taken = BTreeSet::new();
            let mut links = Vec::new();
            for title in binary.sections {
                let section = self
                    .sections
                    .iter()
                    .find(|section| section.title == *title)
                    .ok_or_else(|| format!("{}: no section called {title:?}", binary.name))?;
                let wanted = keys(&section.command);
                let has = keys(&binary.command);
                let missing: Vec<_> = wanted.difference(&has).collect();
                if !missing.is_empty() {
                    return Err(format!(
                        "{} is listed with the section {title:?} but does not take {missing:?}",
                        binary.name
                    ));
                }
                taken.extend(wanted);
                links.push(link(title));
            }
            let rest: Vec<&Arg> = arguments(&binary.command)
                .filter(|arg| !taken.contains(&key(arg)))
                .collect();
            if !rest.is_empty() {
                let title = format!("`{}` only", binary.name);
                links.push(link(&title));
                own.push((title, binary, rest));
            }
            writeln!(out, "| `{}` | {} |", binary.name, links.join(", ")).map_err(fmt)?;
        }
        out.push('\n');

        for section in &self.sections {
            // Flags of a section flattened into this one are listed there.
            let this = keys(&section.command);
            let nested: BTreeSet<String> = self
                .sections
                .iter()
                .map(|other| keys(&other.command))
                .filter(|other| other.len() < this.len() && other.is_subset(&this))
                .flatten()
                .collect();
            let args: Vec<&Arg> = arguments(&section.command)
                .filter(|arg| !nested.contains(&key(arg)))
                .collect();
            writeln!(out, "## {}\n", section.title).map_err(fmt)?;
            writeln!(
                out,
                "{} Defined in {}.\n",
                section.intro,
                code_list(section.source)
            )
            .map_err(fmt)?;
            table(&mut out, &args)?;
        }
        for (title, binary, args) in own {
            writeln!(out, "## {title}\n").map_err(fmt)?;
            writeln!(
                out,
                "Flags only `{}` takes. Defined in {}.\n",
                binary.name,
                code_list(binary.source)
            )
            .map_err(fmt)?;
            table(&mut out, &args)?;
        }

        out.push_str(OPERATOR_HEADER);
        for command in self.edge.get_subcommands() {
            // `edge bench` exists only in a build with the `bench` feature;
            // the page is the same whichever way the test binary was built.
            if !SERVER_SUBCOMMANDS.contains(&command.get_name()) && command.get_name() != "bench" {
                operator(&mut out, "edge", command, 3)?;
            }
        }
        // A server's own subcommands (`edge cloud sites`) are operator
        // commands too.
        for command in self.edge.get_subcommands() {
            if SERVER_SUBCOMMANDS.contains(&command.get_name()) {
                let parent = format!("edge {}", command.get_name());
                for sub in command.get_subcommands() {
                    operator(&mut out, &parent, sub, 3)?;
                }
            }
        }
        Ok(out)
    }
}

const HEADER: &str = "\
<!-- Generated from the binaries' clap definitions by edge/src/reference.rs; do not edit.
     Regenerate: EDGE_WRITE_DOCS=1 cargo test -p edge --bin edge config_reference -->

# Configuration reference

Every flag of every binary, with its environment variable, its default and
what it does, as the binaries' own `--help` gives them. A test fails when this
page and the code disagree; regenerate it with
`EDGE_WRITE_DOCS=1 cargo test -p edge --bin edge config_reference`.

- Every server flag has an `EDGE_*` environment fallback (Kubernetes sets them
  from ConfigMaps); a flag given on the command line wins over its variable.
  The defaults are what `edge up` runs with: it needs no configuration.
- A malformed flag or environment value exits with code 64 and names the flag.
  `--check-config` checks a configuration that way without starting anything.
- A flag whose default is *off* is a switch: giving it turns it on, and its
  variable takes `true` or `false`. Every other flag takes a value, booleans
  included (`--sync-yield false`).
- Durations are written as `90s`, `5m`, `1h`, `30days`; sizes as bytes or
  `20GiB`.
- `edge up` runs the four services in one process: it takes the flags of all
  of them, and wires them to each other itself (their `--*-url` flags are
  ignored there). Run alone, each service binary takes the shared flags plus
  its own; on one host, give each its own `--metrics-addr`.
- Secrets (`--database-url`, `--cloud-database-url`, `--cloud-token`,
  `--site-token`) are never logged and their values are hidden in `--help`; prefer their
  variables, from a Secret, to the flags, which show in process listings. See
  [operations](operations.md#secrets).

";

const OPERATOR_HEADER: &str = "\
## Operator commands

`edge`'s other subcommands talk to a running site over gRPC (see
[operations](operations.md#operator-commands)). `edge bench`, built only with
`--features bench` so the shipped binary carries no test fixtures, is
described in [BENCHMARKS.md](../BENCHMARKS.md).

";

/// Renders `command` (a subcommand of `parent`) and its subcommands.
fn operator(out: &mut String, parent: &str, command: &Command, depth: usize) -> Result<(), String> {
    let path = format!("{parent} {}", command.get_name());
    writeln!(out, "{} `{path}`\n", "#".repeat(depth)).map_err(fmt)?;
    if let Some(about) = command.get_long_about().or(command.get_about()) {
        writeln!(out, "{}\n", sentence(&about.to_string())).map_err(fmt)?;
    }
    let args: Vec<&Arg> = arguments(command).collect();
    if !args.is_empty() {
        table(out, &args)?;
    }
    for sub in command.get_subcommands() {
        operator(out, &path, sub, depth + 1)?;
    }
    Ok(())
}

fn table(out: &mut String, args: &[&Arg]) -> Result<(), String> {
    out.push_str("| flag | env | default | meaning |\n|---|---|---|---|\n");
    for arg in args {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            flag(arg),
            arg.get_env()
                .map(|env| format!("`{}`", env.to_string_lossy()))
                .unwrap_or_default(),
            default(arg),
            meaning(arg),
        )
        .map_err(fmt)?;
    }
    out.push('\n');
    Ok(())
}

/// The arguments a user gives: not clap's own `--help` and `--version`,
/// nor hidden ones.
fn arguments(command: &Command) -> impl Iterator<Item = &Arg> {
    command.get_arguments().filter(|arg| {
        !arg.is_hide_set()
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// What identifies a flag across commands: its long name (clap's ids are
/// field names, which two structs may share for different flags).
fn key(arg: &Arg) -> String {
    match arg.get_long() {
        Some(long) => format!("--{long}"),
        None => arg.get_id().to_string(),
    }
}

fn keys(command: &Command) -> BTreeSet<String> {
    arguments(command).map(key).collect()
}

fn flag(arg: &Arg) -> String {
    if let Some(long) = arg.get_long() {
        return match arg.get_short() {
            Some(short) => format!("`-{short}`, `--{long}`"),
            None => format!("`--{long}`"),
        };
    }
    let name = arg
        .get_value_names()
        .and_then(|names| names.first().map(|name| name.to_string()))
        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
    let many = arg
        .get_num_args()
        .is_some_and(|range| range.max_values() > 1);
    format!("`<{name}>{}`", if many { "…" } else { "" })
}

fn default(arg: &Arg) -> String {
    if arg.is_required_set() {
        return "required".into();
    }
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return "off".into();
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|value| format!("`{}`", value.to_string_lossy()))
        .collect();
    if defaults.is_empty() {
        "unset".into()
    } else {
        defaults.join(", ")
    }
}

fn meaning(arg: &Arg) -> String {
    let text = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|help| help.to_string())
        .unwrap_or_default();
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| match value.get_help() {
            Some(help) => format!("`{}`: {}", value.get_name(), lower_first(&help.to_string())),
            None => format!("`{}`", value.get_name()),
        })
        .collect();
    let boolean = values == ["`true`", "`false`"];
    let mut text = sentence(&text);
    if !values.is_empty() && !boolean && !matches!(arg.get_action(), ArgAction::SetTrue) {
        write!(text, " Values: {}.", values.join("; ")).ok();
    }
    text.replace('|', "\\|")
}

/// Help text as one sentence or more on one line, ending with a full stop
/// (clap drops the full stop of a one-sentence help).
fn sentence(text: &str) -> String {
    let mut text = one_line(text);
    if !text.is_empty() && !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

/// Help text on one table line: paragraphs and wrapped lines joined.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A possible value's help after its name: lower case first, unless the
/// first word is a name with capitals inside (`IngestStream`, `UUIDv7`); no
/// full stop.
fn lower_first(text: &str) -> String {
    let text = one_line(text);
    let text = text.trim_end_matches('.');
    let first_word = text.split_whitespace().next().unwrap_or_default();
    if first_word.chars().filter(|c| c.is_uppercase()).count() > 1 {
        return text.to_string();
    }
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A link to a heading of this page (GitHub's anchors: lower case, spaces
/// to hyphens, punctuation other than hyphens and underscores dropped).
fn link(title: &str) -> String {
    let anchor: String = title
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect();
    format!("[{title}](#{anchor})")
}

/// `a.rs, b.rs` as code spans.
fn code_list(paths: &str) -> String {
    paths
        .split(", ")
        .map(|path| format!("`{path}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt(err: std::fmt::Error) -> String {
    err.to_string()
}

/// Ok when `checked_in` is what the binaries say; otherwise a message naming
/// the first line that differs and how to regenerate.
pub fn check(rendered: &str, checked_in: &str) -> Result<(), String> {
    if rendered == checked_in {
        return Ok(());
    }
    let mut expected = rendered.lines();
    let mut found = checked_in.lines();
    let mut line = 1;
    loop {
        match (expected.next(), found.next()) {
            (Some(want), Some(have)) if want == have => line += 1,
            (want, have) => {
                return Err(format!(
                    "{PATH} is not what the binaries' clap definitions say (a flag was added, \
                     removed or changed without regenerating it).\n\
                     First difference, line {line}:\n  the code says: {}\n  {PATH} says: {}\n\
                     Regenerate it and commit the result:\n  {REGENERATE}",
                    want.unwrap_or("(end of file)"),
                    have.unwrap_or("(end of file)"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use clap::Arg;

    use super::*;

    fn checked_in_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(PATH)
    }

    /// The reference in the repository is the one the code renders.
    #[test]
    fn config_reference() {
        let rendered = Reference::of_workspace()
            .render()
            .expect("the reference renders");
        let path = checked_in_path();
        if std::env::var_os("EDGE_WRITE_DOCS").is_some() {
            std::fs::write(&path, &rendered).expect("docs/configuration.md is writable");
            return;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if let Err(message) = check(&rendered, &checked_in) {
            panic!("{message}");
        }
    }

    fn dummy() -> Arg {
        Arg::new("dummy_flag")
            .long("dummy-flag")
            .env("EDGE_DUMMY_FLAG")
            .help("A flag nobody documented.")
    }

    /// A flag added to a shared struct, and so to every binary that takes
    /// it, shows in its section, and the check fails until the file is
    /// regenerated.
    #[test]
    fn a_flag_added_to_a_section_without_regenerating_fails_the_check() {
        let checked_in = Reference::of_workspace()
            .render()
            .expect("the reference renders");
        let mut reference = Reference::of_workspace();
        for section in &mut reference.sections {
            if section.title == SHARED {
                section.command = section.command.clone().arg(dummy());
            }
        }
        for binary in &mut reference.binaries {
            if binary.sections.contains(&SHARED) {
                binary.command = binary.command.clone().arg(dummy());
            }
        }
        let rendered = reference.render().expect("the reference renders");
        let message = check(&rendered, &checked_in).expect_err("the check fails");
        assert!(message.contains("--dummy-flag"), "{message}");
        assert!(message.contains(REGENERATE), "{message}");
    }

    /// A flag a binary takes outside every section is listed under the
    /// binary's own heading, so it cannot go unlisted either.
    #[test]
    fn a_flag_added_to_one_binary_is_listed_as_its_own() {
        let checked_in = Reference::of_workspace()
            .render()
            .expect("the reference renders");
        let mut reference = Reference::of_workspace();
        for binary in &mut reference.binaries {
            if binary.name == "store-svc" {
                binary.command = binary.command.clone().arg(dummy());
            }
        }
        let rendered = reference.render().expect("the reference renders");
        assert!(rendered.contains("## `store-svc` only"), "{rendered}");
        let message = check(&rendered, &checked_in).expect_err("the check fails");
        assert!(
            message.contains("dummy-flag") || message.contains("store-svc"),
            "{message}"
        );
    }

    /// A binary listed with a section it does not take whole is refused
    /// rather than documented wrongly.
    #[test]
    fn a_binary_listed_with_a_section_it_lacks_is_refused() {
        let mut reference = Reference::of_workspace();
        for section in &mut reference.sections {
            if section.title == SHARED {
                section.command = section.command.clone().arg(dummy());
            }
        }
        let error = reference.render().expect_err("rendering fails");
        assert!(error.contains("--dummy-flag"), "{error}");
    }
}
