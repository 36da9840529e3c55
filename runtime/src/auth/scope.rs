//! Scopes: what an identity may call.

use std::fmt;

/// One right. Every gRPC method needs one (see [`super::policy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Scope {
    /// `edge.v1.IngestService`: what a gateway gets.
    Ingest,
    /// Queries, stats, status, health and watch streams: dashboards.
    Read,
    /// Amend, re-drive, sync now, conflicts, tokens: an operator.
    Operate,
    /// The services' calls to each other (`edge.internal.v1`).
    Mesh,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Operate, Scope::Mesh];

    /// The scope's name, as written in settings and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Mesh => "mesh",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one.
#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?} (expected ingest, read, operate or mesh)")]
pub struct UnknownScope(pub String);

impl std::str::FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text.trim())
            .ok_or_else(|| UnknownScope(text.trim().to_owned()))
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all.
    pub const NONE: Scopes = Scopes(0);

    /// What an operator holds: every scope a person uses (not `mesh`,
    /// which only the services present to each other).
    pub fn operator() -> Self {
        Self::of(&[Scope::Ingest, Scope::Read, Scope::Operate])
    }

    /// What the services present to each other: the internal calls, and
    /// reading each other's status (health-svc watches the others).
    pub fn mesh() -> Self {
        Self::of(&[Scope::Mesh, Scope::Read])
    }

    /// The set of `scopes`.
    pub fn of(scopes: &[Scope]) -> Self {
        Scopes(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// The scopes in the set, in order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses `ingest,read` (as stored and as typed).
    pub fn parse(text: &str) -> Result<Self, UnknownScope> {
        let scopes = text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Scope>, _>>()?;
        Ok(Self::of(&scopes))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_through_text() {
        let scopes = Scopes::parse("read, ingest").expect("parse");
        assert!(scopes.contains(Scope::Ingest) && scopes.contains(Scope::Read));
        assert!(!scopes.contains(Scope::Operate));
        assert_eq!(scopes.to_string(), "ingest,read");
        assert_eq!(Scopes::parse(&scopes.to_string()).ok(), Some(scopes));
        assert!(Scopes::parse("ingest,admin").is_err());
        assert!(!Scopes::operator().contains(Scope::Mesh));
    }
}
