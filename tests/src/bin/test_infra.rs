//! `test_infra`: the infrastructure of one `cargo xtask test` run in containers (ADR 0021).
//! Starts fresh PostgreSQL, RabbitMQ and OpenBao containers, prints what the tests need as
//! `NAME=value` lines and then `ready`, and keeps them until its standard input closes
//! (xtask ended, however it ended: the pipe closes with it) or it is interrupted; then it
//! removes them. A container this process could not remove (it was killed itself) still
//! carries the run's label, by which xtask removes it.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};
use tests::containers;

const REMOVAL: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let code = rt.block_on(run());
    // stdin's reader thread may still be blocked: do not wait for it.
    rt.shutdown_background();
    code
}

async fn run() -> ExitCode {
    let mut out = std::io::stdout().lock();
    let token = uuid::Uuid::new_v4().to_string();
    // PostgreSQL and RabbitMQ on fixed ports: the fault tests stop and start them, and a
    // container started again keeps a port it was given, not one the engine chose.
    let (pg_port, mq_port) = (tests::procs::free_port(), tests::procs::free_port());
    let named = |request: ContainerRequest<GenericImage>, role: &str| {
        request.with_container_name(format!("fleet-{}-{role}", containers::run_id()))
    };
    let (pg, mq, bao) = tokio::join!(
        containers::on_loopback(
            named(containers::postgres(), "postgres"),
            &[(pg_port, 5432)]
        )
        .start(),
        containers::on_loopback(
            named(containers::rabbitmq(), "rabbitmq"),
            &[(mq_port, 5672)]
        )
        .start(),
        containers::on_loopback(named(containers::openbao(&token), "openbao"), &[(0, 8200)])
            .start(),
    );
    let (pg, mq, bao) = match (pg, mq, bao) {
        (Ok(pg), Ok(mq), Ok(bao)) => (pg, mq, bao),
        (pg, mq, bao) => {
            for e in [pg.as_ref().err(), mq.as_ref().err(), bao.as_ref().err()]
                .into_iter()
                .flatten()
            {
                eprintln!("test_infra: a container did not start: {e}");
            }
            remove([pg.ok(), mq.ok(), bao.ok()].into_iter().flatten().collect()).await;
            return ExitCode::FAILURE;
        }
    };
    let bao_port = match bao.get_host_port_ipv4(8200).await {
        Ok(port) => port,
        Err(e) => {
            eprintln!("test_infra: OpenBao's port: {e}");
            remove(vec![pg, mq, bao]).await;
            return ExitCode::FAILURE;
        }
    };
    let lines = [
        format!("FLEET_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:{pg_port}/postgres"),
        format!("FLEET_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:{mq_port}/%2f"),
        format!("VAULT_ADDR=http://127.0.0.1:{bao_port}"),
        format!("VAULT_TOKEN={token}"),
        format!("FLEET_TEST_POSTGRES_CONTAINER={}", pg.id()),
        format!("FLEET_TEST_RABBITMQ_CONTAINER={}", mq.id()),
        "ready".to_owned(),
    ];
    for line in lines {
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            remove(vec![pg, mq, bao]).await;
            return ExitCode::FAILURE;
        }
    }
    until_released().await;
    remove(vec![pg, mq, bao]).await;
    ExitCode::SUCCESS
}

/// Waits until standard input closes, or SIGINT or SIGTERM arrives.
async fn until_released() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = rx => {}
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

async fn remove(started: Vec<ContainerAsync<GenericImage>>) {
    let all = futures_util::future::join_all(started.into_iter().map(|c| async move {
        let id = c.id().to_owned();
        match tokio::time::timeout(REMOVAL, c.rm()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("test_infra: removing {id}: {e}"),
            Err(_) => eprintln!("test_infra: removing {id} took over {REMOVAL:?}"),
        }
    }));
    all.await;
}
