//! Which scope each gRPC method needs: the one table of rights, so no
//! handler checks a caller itself and no method is served unguarded.
//! A test walks every method the protos declare and fails on one the
//! table does not name.

use super::Scope;

/// What a call must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: `grpc.health.v1` (Kubernetes probes, load balancers).
    Anonymous,
    /// Any valid credential: reflection, and paths no service serves (the
    /// router then answers UNIMPLEMENTED, to known callers only).
    Authenticated,
    /// One of these scopes.
    AnyOf(&'static [Scope]),
}

/// Rules by path prefix; the first match wins, so a method comes before
/// its service.
const RULES: &[(&str, Requirement)] = &[
    // Probes ask once; watching health holds a stream open, which only a
    // known caller may do.
    ("/grpc.health.v1.Health/Check", Requirement::Anonymous),
    ("/grpc.health.v1.Health/", Requirement::Authenticated),
    ("/grpc.reflection.", Requirement::Authenticated),
    (
        "/edge.v1.IngestService/",
        Requirement::AnyOf(&[Scope::Ingest]),
    ),
    (
        "/edge.v1.ReadingsService/",
        Requirement::AnyOf(&[Scope::Read]),
    ),
    (
        "/edge.v1.OperationsService/",
        Requirement::AnyOf(&[Scope::Operate]),
    ),
    (
        "/edge.v1.TokensService/",
        Requirement::AnyOf(&[Scope::Operate]),
    ),
    (
        "/edge.v1.SyncService/SyncNow",
        Requirement::AnyOf(&[Scope::Operate]),
    ),
    ("/edge.v1.SyncService/", Requirement::AnyOf(&[Scope::Read])),
    // A gateway may ask whether the site is online, to tell a slow site
    // from one cut off.
    (
        "/edge.v1.CloudHealthService/",
        Requirement::AnyOf(&[Scope::Read, Scope::Ingest]),
    ),
    ("/edge.internal.v1.", Requirement::AnyOf(&[Scope::Mesh])),
];

/// What a call to `path` (`/package.Service/Method`) must present.
pub fn requirement(path: &str) -> Requirement {
    RULES
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix))
        .map_or(Requirement::Authenticated, |(_, r)| *r)
}

/// Whether a rule names `path` (rather than the fallback).
#[cfg(test)]
fn named(path: &str) -> bool {
    RULES.iter().any(|(prefix, _)| path.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn every_declared_method_has_a_rule() {
        let set = prost_types::FileDescriptorSet::decode(edge_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut methods = 0;
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let name = service.name.unwrap_or_default();
                for method in service.method {
                    let path = format!("/{package}.{name}/{}", method.name.unwrap_or_default());
                    assert!(named(&path), "{path} has no rule in auth::policy");
                    assert_ne!(requirement(&path), Requirement::Anonymous, "{path}");
                    methods += 1;
                }
            }
        }
        assert!(methods > 20, "only {methods} methods found");
    }

    #[test]
    fn rights_follow_the_callers() {
        let needs = |path| requirement(path);
        assert_eq!(
            needs("/grpc.health.v1.Health/Check"),
            Requirement::Anonymous
        );
        assert_eq!(
            needs("/edge.v1.OperationsService/Amend"),
            Requirement::AnyOf(&[Scope::Operate])
        );
        assert_eq!(
            needs("/edge.v1.SyncService/SyncNow"),
            Requirement::AnyOf(&[Scope::Operate])
        );
        assert_eq!(
            needs("/edge.v1.SyncService/GetStatus"),
            Requirement::AnyOf(&[Scope::Read])
        );
        assert_eq!(
            needs("/edge.internal.v1.StoreSyncService/ApplyRemoteVersions"),
            Requirement::AnyOf(&[Scope::Mesh])
        );
        assert_eq!(needs("/nope.Service/X"), Requirement::Authenticated);
        assert_eq!(
            needs("/grpc.health.v1.Health/Watch"),
            Requirement::Authenticated
        );
    }
}
