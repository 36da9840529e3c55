//! The credential check every gRPC server runs before any handler: one
//! tower layer, so rights are decided in one place ([`super::policy`]) and
//! a handler only ever sees calls it may answer.
//!
//! A call presents a bearer token (metadata `authorization: Bearer …`) or a
//! client certificate verified in the TLS handshake; a token wins when both
//! are there. Then:
//! - none, and the method is not anonymous: `UNAUTHENTICATED`;
//! - an unknown or revoked token: `UNAUTHENTICATED`;
//! - a scope missing: `PERMISSION_DENIED`, naming the scope needed;
//! - over the identity's call rate: `RESOURCE_EXHAUSTED` with a retry delay;
//! - otherwise the [`Identity`] goes into the call's extensions and the call
//!   proceeds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use super::identity::{Identities, Identity, Lookup};
use super::limits::{RateLimiter, Rates, over_rate};
use super::policy::{Requirement, requirement};
use super::{Scope, Scopes};
use crate::listener::PeerInfo;
use crate::security_metrics::{labels, metrics};

/// What a server accepts, shared by its calls.
#[derive(Clone)]
pub struct Guard {
    inner: Arc<GuardInner>,
}

struct GuardInner {
    identities: Arc<Identities>,
    /// Scopes of a client-certificate identity the table does not name.
    cert_scopes: Scopes,
    cert_rates: Rates,
    cert_identities: Mutex<HashMap<Arc<str>, Arc<Identity>>>,
    server: &'static str,
}

impl Guard {
    /// A guard for the server `server` (a metrics label) accepting
    /// `identities`; a verified client certificate whose common name the
    /// table does not know gets `cert_scopes` and `cert_rates`.
    pub fn new(
        identities: Arc<Identities>,
        cert_scopes: Scopes,
        cert_rates: Rates,
        server: &'static str,
    ) -> Self {
        Self {
            inner: Arc::new(GuardInner {
                identities,
                cert_scopes,
                cert_rates,
                cert_identities: Mutex::new(HashMap::new()),
                server,
            }),
        }
    }

    fn refuse(&self, reason: &'static str, status: Status) -> Status {
        metrics()
            .auth_refused
            .add(1, &labels(self.inner.server, "reason", reason));
        status
    }

    /// The identity behind a verified client certificate named `name`: the
    /// identity of that name in the table, or one with the certificate
    /// scopes. Refused when the name is revoked, is an identity a
    /// certificate may not stand for (the services' own, or one holding
    /// `operate` or `mesh`: only a token carries those), or is no name the
    /// site can record as a writer (too long, control characters).
    fn cert_identity(&self, name: &Arc<str>) -> Result<Arc<Identity>, Status> {
        let problem = if name.is_empty() {
            Some("is empty".to_owned())
        } else {
            edge_proto::rules::written_by_problem(name)
        };
        if let Some(problem) = problem {
            return Err(self.refuse(
                "unauthenticated",
                Status::unauthenticated(format!(
                    "the common name of this client certificate is not a usable identity name: \
                     it {problem}"
                )),
            ));
        }
        let identities = &self.inner.identities;
        let named = identities.by_name(name);
        if identities.is_configured(name)
            || named.as_ref().is_some_and(|i| {
                i.scopes.contains(Scope::Mesh) || i.scopes.contains(Scope::Operate)
            })
        {
            return Err(self.refuse(
                "unauthenticated",
                Status::unauthenticated(format!(
                    "a client certificate cannot stand for {name:?}: that identity holds the \
                     operate or mesh scope, which only a token carries"
                )),
            ));
        }
        if let Some(identity) = named {
            return Ok(identity);
        }
        if identities.is_revoked(name) {
            return Err(self.refuse(
                "unauthenticated",
                Status::unauthenticated(format!(
                    "the identity {name:?} of this client certificate is revoked"
                )),
            ));
        }
        let mut known = match self.inner.cert_identities.lock() {
            Ok(known) => known,
            Err(poisoned) => poisoned.into_inner(),
        };
        Ok(known
            .entry(name.clone())
            .or_insert_with(|| {
                Arc::new(Identity {
                    name: name.clone(),
                    scopes: self.inner.cert_scopes,
                    limiter: RateLimiter::new(self.inner.cert_rates),
                    retired: std::sync::atomic::AtomicBool::new(false),
                })
            })
            .clone())
    }

    /// Decides a call to `path` that presented `authorization` (the
    /// metadata value) and came over a connection from `peer`: its identity,
    /// or the status that refuses it.
    pub async fn admit(
        &self,
        path: &str,
        authorization: Option<&http::HeaderValue>,
        peer: Option<&PeerInfo>,
    ) -> Result<Option<Arc<Identity>>, Status> {
        let needs = requirement(path);
        if needs == Requirement::Anonymous {
            return Ok(None);
        }
        let token = authorization.map(|v| v.to_str().ok().and_then(edge_credentials::bearer));
        let identity = match token {
            Some(Some(token)) => match self.inner.identities.lookup(token).await {
                Lookup::Found(identity) => identity,
                Lookup::Unknown => {
                    return Err(self.refuse(
                        "unauthenticated",
                        Status::unauthenticated(
                            "the bearer token is not valid (unknown or revoked)",
                        ),
                    ));
                }
                Lookup::NotLoaded => {
                    return Err(Status::unavailable(
                        "identities are not loaded yet (store-svc unreachable); retry",
                    ));
                }
            },
            Some(None) => {
                return Err(self.refuse(
                    "unauthenticated",
                    Status::unauthenticated("the authorization metadata must be `Bearer <token>`"),
                ));
            }
            None => match peer.and_then(|p| p.client_cert_name.as_ref()) {
                Some(name) => self.cert_identity(name)?,
                None => {
                    return Err(self.refuse(
                        "unauthenticated",
                        Status::unauthenticated(
                            "this call needs a credential: metadata `authorization: Bearer \
                             <token>` or a client certificate",
                        ),
                    ));
                }
            },
        };
        if let Requirement::AnyOf(scopes) = needs
            && !scopes.iter().any(|s| identity.scopes.contains(*s))
        {
            let needed: Vec<&str> = scopes.iter().map(|s| Scope::as_str(*s)).collect();
            return Err(self.refuse(
                "permission_denied",
                Status::permission_denied(format!(
                    "identity {:?} lacks scope {} needed by {path} (it has: {})",
                    identity.name,
                    needed.join(" or "),
                    if identity.scopes == Scopes::NONE {
                        "none".to_owned()
                    } else {
                        identity.scopes.to_string()
                    }
                )),
            ));
        }
        if let Err(retry_after) = identity.limiter.check_call() {
            metrics()
                .rate_limited
                .add(1, &labels(self.inner.server, "kind", "calls"));
            return Err(over_rate(&identity.name, "calls-per-second", retry_after));
        }
        Ok(Some(identity))
    }
}

/// Puts a [`Guard`] in front of a server's routes.
#[derive(Clone)]
pub struct GuardLayer {
    guard: Guard,
}

impl GuardLayer {
    /// The layer of `guard`.
    pub fn new(guard: Guard) -> Self {
        Self { guard }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guarded {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service [`GuardLayer`] makes.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: Guard,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<B>> for Guarded<S>
where
    S: Service<Request<B>, Response = Response<tonic::body::Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is the one made ready; the original waits for its own
        // poll_ready (the tower pattern for services called from a future).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        let path = request.uri().path().to_owned();
        let authorization = request.headers().get(http::header::AUTHORIZATION).cloned();
        let peer = request.extensions().get::<PeerInfo>().cloned();
        Box::pin(async move {
            match guard
                .admit(&path, authorization.as_ref(), peer.as_ref())
                .await
            {
                Ok(identity) => {
                    if let Some(identity) = identity {
                        request.extensions_mut().insert(identity);
                    }
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The identity that made a call, as the guard admitted it.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<Arc<Identity>> {
    request.extensions().get::<Arc<Identity>>().cloned()
}

/// The name of the identity that made a call, for the record (who created a
/// token, who wrote a version); `unknown` on a route no guard admitted.
pub fn caller_name<T>(request: &tonic::Request<T>) -> String {
    request.extensions().get::<Arc<Identity>>().map_or_else(
        || "unknown".to_owned(),
        |identity| identity.name.to_string(),
    )
}
