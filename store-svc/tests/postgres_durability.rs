//! store-svc checks at start that PostgreSQL makes a commit durable, as the
//! server reports its settings to the store's own connection, and refuses
//! to start otherwise, naming the setting, unless the operator accepts the
//! risk.

use edge_testkit::TestDatabase;
use store_svc::app::StartError;
use store_svc::db::DbError;

mod common;

use common::*;

#[tokio::test]
async fn a_server_that_does_not_make_commits_durable_is_refused_unless_accepted() {
    let Some(db) = TestDatabase::new(edge_testkit::Backend::Postgres).await else {
        return;
    };
    let url = db.url.clone().expect("a PostgreSQL database");
    // A per-database override, as an operator or a hosting default might
    // set it: commits acknowledged before their WAL is on disk.
    let name = url.rsplit('/').next().expect("database name").to_owned();
    let server = edge_testkit::postgres_server_url();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server)
        .await
        .expect("admin connection");
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {name} SET synchronous_commit = off"
    ))
    .execute(&mut admin)
    .await
    .expect("turn synchronous_commit off for the test database");

    let refused = RunningStore::start(&db, TestClock::at(T0_US), None).await;
    match refused {
        Err(StartError::Db(err @ DbError::NotDurable(_))) => {
            let message = err.to_string();
            assert!(message.contains("synchronous_commit"), "{message}");
            assert!(
                message.contains("--accept-postgres-durability-risk"),
                "{message}"
            );
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("started on a server that does not make commits durable"),
    }

    let store = RunningStore::start_with(&db, TestClock::at(T0_US), |config| {
        config.accept_postgres_durability_risk = true;
    })
    .await
    .expect("starts when the risk is accepted");
    store.stop().await;

    sqlx::raw_sql(&format!("ALTER DATABASE {name} RESET synchronous_commit"))
        .execute(&mut admin)
        .await
        .expect("reset");
    let store = RunningStore::start(&db, TestClock::at(T0_US), None)
        .await
        .expect("starts on a durable server");
    store.stop().await;
    db.cleanup().await;
}
