//! `orderflow demo`: the whole pipeline in one process on the embedded broker.

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::EmbeddedBroker,
    cli::demo::DemoArgs,
    codec::confluent::Schemas,
    console::Console,
    dlq,
    processor::{self, Processor, backoff::Backoff},
    producer::{self, WireFormat},
    registry::{self, client::Client},
    shutdown,
    simulated::Simulated,
    web::{
        self, App, Role, Settings, Users,
        auth::{UserEntry, hash_password},
    },
};

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let out = Console::prefixed("demo");
    let broker = EmbeddedBroker::start(args.listen, &args.store.data_dir)
        .await
        .context("starting the embedded broker")?;
    out.line(format_args!(
        "broker on {} (data in {}); other orderflow commands can use --bootstrap-servers {}",
        broker.addr(),
        args.store.data_dir.display(),
        broker.bootstrap_servers()
    ));
    let kafka = broker.kafka_config(&args.conn.c, &args.conn.x);
    kafka
        .create_topics(&args.conn.topics(), args.partitions, 1)
        .await?;

    let stop = shutdown::on_signals();
    // Producing ends at --count/--duration (or Ctrl-C); then the processor drains,
    // and after it the DLQ consumer.
    let stop_producing = stop.child_token();
    if let Some(d) = args.duration {
        let t = stop_producing.clone();
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            t.cancel();
        });
    }
    let drain_processor = CancellationToken::new();
    let drain_dlq = CancellationToken::new();

    let produce_cfg = producer::Config {
        kafka: kafka.clone(),
        topic: args.conn.topic.clone(),
        rate: (args.rate > 0.0).then_some(args.rate),
        count: args.count,
        format: WireFormat::Avro,
        confluent: None,
        ids: crate::order::Ids::default(),
    };
    let producer_task = {
        let (stop_producing, drain) = (stop_producing.clone(), drain_processor.clone());
        tokio::spawn(async move {
            let r = producer::run(
                &produce_cfg,
                producer::Output::Lines(Console::prefixed("producer")),
                stop_producing,
            )
            .await;
            drain.cancel();
            r
        })
    };

    let mut pcfg = processor::Config::new(kafka.clone());
    pcfg.topic = args.conn.topic.clone();
    pcfg.dlq_topic = args.conn.dlq_topic.clone();
    pcfg.backoff = Backoff {
        base: std::time::Duration::from_millis(200),
        max: std::time::Duration::from_secs(2),
    };
    let store = args.store.open().await?;
    if let Some(store) = &store
        && let Some(url) = registry(&args, store.clone(), stop.clone()).await?
    {
        pcfg.schemas = Arc::new(Schemas::new(Some(Client::new(&url)?)));
    }
    let pout = Console::prefixed("processor");
    let mut processor = Processor::new(
        pcfg,
        Box::new(Simulated {
            fail_when: Some(args.fail_when),
            fail_attempts: None,
        }),
        Box::new(move |e: &processor::Event<'_>| processor::print_event(&pout, e)),
    );
    if let Some(store) = store.clone() {
        processor = processor.with_store(store);
    }
    if let Some(store) = &store {
        console(&args, &kafka, store.clone(), stop.clone()).await?;
    }
    let processor_task = {
        let (stop, drain, drain_dlq) = (stop.clone(), drain_processor.clone(), drain_dlq.clone());
        tokio::spawn(async move {
            let r = processor.run(stop, drain).await;
            drain_dlq.cancel();
            r
        })
    };

    let dlq_cfg = dlq::consumer::Config {
        kafka,
        topic: args.conn.dlq_topic.clone(),
        group: "dlq-group".into(),
    };
    let dead = Arc::new(Mutex::new(0u64));
    let dlq_task = {
        let (stop, drain, dead) = (stop.clone(), drain_dlq.clone(), dead.clone());
        let dout = Console::prefixed("dlq");
        tokio::spawn(async move {
            dlq::consumer::run(
                &dlq_cfg,
                |e| {
                    *dead.lock().expect("lock") += 1;
                    dlq::consumer::print(&dout, e)
                },
                stop,
                drain,
            )
            .await
        })
    };

    let produced = producer_task.await.context("producer task")??;
    let report = processor_task.await.context("processor task")??;
    dlq_task.await.context("DLQ consumer task")??;
    out.line(format_args!(
        "produced {}, processed {}, dead-lettered {} (DLQ consumer saw {}), average price {}",
        produced.sent,
        report.processed,
        report.dead_lettered,
        dead.lock().expect("lock"),
        crate::console::amount(report.aggregates.total.avg()),
    ));
    drop(broker);
    Ok(())
}

/// Starts the schema registry beside the pipeline, over the demo's store: its
/// URL, or `None` when it is off or cannot listen (the demo runs without it).
async fn registry(
    args: &DemoArgs,
    store: Arc<crate::store::Store>,
    stop: CancellationToken,
) -> anyhow::Result<Option<String>> {
    if args.registry_listen == "off" {
        return Ok(None);
    }
    let out = Console::prefixed("registry");
    let listener = match tokio::net::TcpListener::bind(&args.registry_listen).await {
        Ok(l) => l,
        Err(e) => {
            out.line(format_args!(
                "cannot listen on {} ({e}): the demo runs without the schema registry (--registry-listen picks another address)",
                args.registry_listen
            ));
            return Ok(None);
        }
    };
    let url = format!("http://{}", listener.local_addr()?);
    out.line(format_args!(
        "schema registry on {url}/ (orderflow produce --format confluent --schema-registry-url {url})"
    ));
    tokio::spawn(async move {
        if let Err(e) = registry::http::run(listener, registry::Registry::new(store), stop).await {
            tracing::error!(error = %e, "the schema registry stopped");
        }
    });
    Ok(Some(url))
}

/// Starts the web console beside the pipeline, with the users file's users or
/// else a `demo` operator whose password is printed. A console that cannot
/// listen is reported, and the demo runs without it.
async fn console(
    args: &DemoArgs,
    kafka: &crate::kafka::KafkaConfig,
    store: Arc<crate::store::Store>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if args.console_listen == "off" {
        return Ok(());
    }
    let out = Console::prefixed("console");
    let mut users = args.users.load()?;
    let mut made = None;
    if users.is_empty() {
        let password = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
        users = Users::new(vec![UserEntry {
            name: "demo".into(),
            role: Role::Operator,
            password_hash: hash_password(&password)?,
            token_sha256: Vec::new(),
        }])?;
        made = Some(password);
    }
    let listener = match tokio::net::TcpListener::bind(&args.console_listen).await {
        Ok(l) => l,
        Err(e) => {
            out.line(format_args!(
                "cannot listen on {} ({e}): the demo runs without the console (--console-listen picks another address)",
                args.console_listen
            ));
            return Ok(());
        }
    };
    let app = App::new(
        store,
        Settings {
            kafka: kafka.clone(),
            topics: crate::cli::serve::topics(&args.conn),
            group: crate::processor::Config::new(kafka.clone()).group,
            users,
            session_ttl: std::time::Duration::from_secs(12 * 3600),
        },
        stop,
    )?;
    out.line(format_args!(
        "web console on http://{}/{}",
        listener.local_addr()?,
        made.map_or(String::new(), |p| format!(
            " (sign in as demo, password {p})"
        ))
    ));
    tokio::spawn(async move {
        if let Err(e) = web::run(listener, app).await {
            tracing::error!(error = %e, "the web console stopped");
        }
    });
    Ok(())
}
