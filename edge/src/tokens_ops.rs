//! `edge tokens add|list|revoke`: the site's identities, managed through
//! store-svc's `edge.v1.TokensService` (an operator's right).

use anyhow::Context as _;
use edge_proto::v1 as pb;
use edge_proto::v1::tokens_service_client::TokensServiceClient;
use edge_runtime::client::ClientArgs;

use crate::cli::{Format, TokensArgs, TokensCommand};
use crate::ops::rfc3339;

/// Runs one `edge tokens` command.
pub async fn tokens(args: TokensArgs) -> anyhow::Result<()> {
    let url = &args.target.store_url;
    let mut client = TokensServiceClient::new(args.access.channel(url, &ClientArgs::default())?);
    match args.command {
        TokensCommand::Add {
            name,
            scope,
            calls_per_second,
            readings_per_second,
        } => {
            let created = client
                .create_token(pb::CreateTokenRequest {
                    name: name.clone(),
                    scopes: scope.iter().map(|s| s.as_str().to_owned()).collect(),
                    calls_per_second,
                    readings_per_second,
                })
                .await
                .with_context(|| format!("creating the token {name:?} at {url} failed"))?
                .into_inner();
            // The token alone on stdout, so `$(edge tokens add …)` captures it.
            println!("{}", created.token);
            eprintln!(
                "token for {name:?} ({}) created; it is shown only now",
                scope
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        TokensCommand::List {
            include_revoked,
            format,
        } => {
            let listed = client
                .list_tokens(pb::ListTokensRequest { include_revoked })
                .await
                .with_context(|| format!("listing tokens at {url} failed"))?
                .into_inner();
            match format {
                Format::Json => {
                    let rows: Vec<_> = listed
                        .tokens
                        .iter()
                        .map(|t| {
                            serde_json::json!({
                                "name": t.name,
                                "scopes": t.scopes,
                                "created_at": rfc3339(t.created_at.as_ref()),
                                "created_by": t.created_by,
                                "revoked_at": t.revoked_at.as_ref().map(|r| rfc3339(Some(r))),
                                "calls_per_second": t.calls_per_second,
                                "readings_per_second": t.readings_per_second,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Format::Table => {
                    println!(
                        "{:<24} {:<22} {:<30} {:<30}",
                        "NAME", "SCOPES", "CREATED", "REVOKED"
                    );
                    for t in &listed.tokens {
                        println!(
                            "{:<24} {:<22} {:<30} {:<30}",
                            t.name,
                            t.scopes.join(","),
                            rfc3339(t.created_at.as_ref()),
                            t.revoked_at
                                .as_ref()
                                .map_or_else(|| "-".to_owned(), |r| rfc3339(Some(r))),
                        );
                    }
                }
            }
        }
        TokensCommand::Revoke { name } => {
            client
                .revoke_token(pb::RevokeTokenRequest { name: name.clone() })
                .await
                .with_context(|| format!("revoking the token {name:?} at {url} failed"))?;
            println!("revoked {name:?}; every service refuses it within 5 s");
        }
    }
    Ok(())
}
