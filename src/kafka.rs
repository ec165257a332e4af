//! Kafka client configuration shared by every command, and topic administration.

use std::time::Duration;

use rdkafka::{
    ClientConfig, ClientContext, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    config::FromClientConfigAndContext,
    consumer::{Consumer, ConsumerContext},
    error::KafkaError,
    producer::{BaseProducer, FutureProducer, Producer},
    types::RDKafkaErrorCode,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid -X option {0:?}: expected key=value, e.g. -X security.protocol=SASL_SSL")]
    BadOverride(String),
    #[error("could not create the Kafka {what} for {bootstrap}: {source}")]
    Client {
        what: &'static str,
        bootstrap: String,
        #[source]
        source: KafkaError,
    },
    #[error("creating topic {topic} failed: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(transparent)]
    Admin(Box<AdminError>),
}

#[derive(Debug, thiserror::Error)]
#[error("admin request to {bootstrap} failed: {source}; {hint}")]
pub struct AdminError {
    bootstrap: String,
    #[source]
    source: KafkaError,
    /// What the client saw of the connection (an authentication or TLS failure)
    /// or, when it saw nothing, what to check.
    hint: String,
}

/// What every orderflow producer is: idempotent with acks=all (no duplicates or
/// reordering on retry), batching for up to 5 ms.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
];

/// Where the cluster is and how to talk to it: the bootstrap list plus librdkafka
/// properties given with `-X key=value`, which win over our defaults (as in kcat).
#[derive(Debug, Clone, Default)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// librdkafka properties for consumers only (`-C`, and what the embedded
    /// broker calls for); `overrides` still win over them.
    pub consumer_settings: Vec<(String, String)>,
    pub overrides: Vec<(String, String)>,
}

/// A client context that keeps what librdkafka reported of its failed
/// connections, so that a failed request can say why (a wrong password, an
/// untrusted certificate) instead of only that the broker could not be reached.
#[derive(Default)]
pub struct LastError(std::sync::Mutex<Seen>);

#[derive(Default)]
struct Seen {
    reason: Option<String>,
    /// An authentication or TLS failure: retrying will not help.
    fatal: bool,
}

impl LastError {
    /// What to say with a failed request.
    pub fn hint(&self) -> String {
        match &self.lock().reason {
            Some(e) => format!("the connection failed: {e}"),
            None => "is a broker running there?".into(),
        }
    }

    /// Whether the client was refused for a reason that retrying will not mend.
    pub fn refused(&self) -> bool {
        self.lock().fatal
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error.clone(), reason);
        let code = error.rdkafka_error_code();
        let fatal = matches!(
            code,
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        );
        let mut seen = self.lock();
        // "All brokers are down" follows every failed connection and says less
        // than the failure before it.
        if fatal || !seen.fatal && code != Some(RDKafkaErrorCode::AllBrokersDown) {
            seen.reason = Some(reason.to_string());
            seen.fatal |= fatal;
        } else if seen.reason.is_none() {
            seen.reason = Some(reason.to_string());
        }
    }
}

impl rdkafka::producer::ProducerContext for LastError {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// The context of every consumer: quiet about reaching the end of a partition,
/// which librdkafka reports as an error but is how `--exit-at-end` knows it is done.
pub struct ConsumerLog;

impl ClientContext for ConsumerLog {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }
}

impl ConsumerContext for ConsumerLog {}

pub fn log_client_error(error: KafkaError, reason: &str) {
    match error {
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
            tracing::debug!(reason, "end of partition")
        }
        e => tracing::error!(error = %e, reason, "librdkafka error"),
    }
}

/// Whether the consumer has read every assigned partition up to its high watermark.
///
/// End-of-partition events alone cannot tell: one seen before the last messages
/// were fetched would end a drain early. This asks the broker (a blocking round
/// trip), so callers only use it when the events say they are at the end or when
/// nothing has arrived for a while.
///
/// The high watermarks are asked through `watermarks`, a client of the same
/// cluster. The consumer's own connection would do, but Kafka answers a
/// connection's requests in order, so there the question waits behind a fetch
/// held for up to `fetch.wait.max.ms` (half a second by default).
pub fn caught_up<C: ConsumerContext, K: Consumer<C>, W: ClientContext>(
    consumer: &K,
    watermarks: &rdkafka::client::Client<W>,
) -> Result<bool, KafkaError> {
    let timeout = Duration::from_secs(10);
    let assignment = consumer.assignment()?;
    if assignment.count() == 0 {
        return Ok(false);
    }
    let positions = consumer.position()?;
    // Asked of the group coordinator only for partitions not read from yet: the
    // round trip took half a second on Apache Kafka.
    let mut committed: Option<rdkafka::TopicPartitionList> = None;
    for e in assignment.elements() {
        let (topic, partition) = (e.topic(), e.partition());
        let offset_in = |tpl: &rdkafka::TopicPartitionList| match tpl
            .find_partition(topic, partition)
            .map(|e| e.offset())
        {
            Some(rdkafka::Offset::Offset(o)) => Some(o),
            _ => None,
        };
        let next = match offset_in(&positions) {
            Some(o) => Some(o),
            None => {
                if committed.is_none() {
                    committed = Some(consumer.committed_offsets(assignment.clone(), timeout)?);
                }
                committed.as_ref().and_then(offset_in)
            }
        };
        let (low, high) = watermarks.fetch_watermarks(topic, partition, timeout)?;
        if next.unwrap_or(low).max(low) < high {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Parses one `-X key=value` argument.
pub fn parse_override(s: &str) -> Result<(String, String), Error> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(Error::BadOverride(s.to_string())),
    }
}

impl KafkaConfig {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            ..KafkaConfig::default()
        }
    }

    /// A consumer configuration: the group, reading from the earliest message
    /// when the group has no committed offset yet (no order is skipped), then
    /// `extra`, then the consumer settings, then the `-X` overrides.
    pub fn consumer_config(&self, group: &str, extra: &[(&str, &str)]) -> ClientConfig {
        let mut defaults = vec![("group.id", group), ("auto.offset.reset", "earliest")];
        defaults.extend_from_slice(extra);
        defaults.extend(
            self.consumer_settings
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        self.client_config(&defaults)
    }

    /// A client configuration with `defaults` applied first and `-X` overrides last.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.overrides {
            c.set(k, v);
        }
        c
    }

    pub fn create<T, C>(
        &self,
        what: &'static str,
        config: &ClientConfig,
        context: C,
    ) -> Result<T, Error>
    where
        C: ClientContext,
        T: FromClientConfigAndContext<C>,
    {
        config
            .create_with_context(context)
            .map_err(|source| Error::Client {
                what,
                bootstrap: self.bootstrap_servers.clone(),
                source,
            })
    }

    /// An idempotent producer (acks=all, no duplicates or reordering on retry), as
    /// both the order producer and the processor's DLQ writer need.
    pub fn producer(&self) -> Result<FutureProducer, Error> {
        self.producer_with(DefaultClientContext)
    }

    /// The largest record our producers may send: librdkafka's `message.max.bytes`
    /// as `-X` sets it, else its default (the broker's default topic limit,
    /// 1,048,588, is larger).
    pub fn message_max_bytes(&self) -> usize {
        self.overrides
            .iter()
            .rev()
            .find(|(k, _)| k == "message.max.bytes")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1_000_000)
    }

    /// The same idempotent producer, with a context of the caller's (one that
    /// serves delivery reports itself, say).
    pub fn producer_with<T, C>(&self, context: C) -> Result<T, Error>
    where
        C: ClientContext,
        T: FromClientConfigAndContext<C>,
    {
        self.create("producer", &self.client_config(PRODUCER_DEFAULTS), context)
    }

    /// Creates the topics; topics that already exist are not an error.
    pub async fn create_topics(
        &self,
        topics: &[&str],
        partitions: i32,
        replication: i32,
    ) -> Result<Vec<String>, Error> {
        let admin: AdminClient<DefaultClientContext> = self.create(
            "admin client",
            &self.client_config(&[]),
            DefaultClientContext,
        )?;
        // Metadata comes through a producer that nothing else uses: polling it
        // serves librdkafka's log of the failed connection to `LastError`, which an
        // admin client, polling only for its own results, would leave unread.
        let probe: BaseProducer<LastError> =
            self.create("client", &self.client_config(&[]), LastError::default())?;
        let admin_error = |source: KafkaError| {
            Error::Admin(Box::new(AdminError {
                bootstrap: self.bootstrap_servers.clone(),
                source,
                hint: probe.context().hint(),
            }))
        };
        // Asking first keeps brokers from logging an error for every existing topic.
        // Asked a second at a time, so that a refused password or certificate ends
        // the wait at once.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let metadata = loop {
            match probe.client().fetch_metadata(None, Duration::from_secs(1)) {
                Ok(m) => break m,
                Err(e) => {
                    probe.poll(Duration::from_millis(100));
                    if probe.context().refused() || std::time::Instant::now() > deadline {
                        return Err(admin_error(e));
                    }
                }
            }
        };
        let existing: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
        let new: Vec<NewTopic> = topics
            .iter()
            .filter(|t| !existing.contains(t))
            .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
            .collect();
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .create_topics(&new, &opts)
            .await
            .map_err(admin_error)?;
        let mut created = Vec::new();
        for r in results {
            match r {
                Ok(topic) => created.push(topic),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(Error::CreateTopic { topic, code }),
            }
        }
        Ok(created)
    }
}

/// What a failed write to a topic calls for, decided in one place for every
/// writer of ours: retrying helps most failures (a leader moving, a broker
/// restarting), never these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFailure {
    Retry,
    /// The record is larger than the producer or the topic accepts.
    TooLarge,
    /// Nothing but an operator can fix it: the hint says what to do.
    Fatal(&'static str),
}

pub fn classify_write_error(e: &KafkaError) -> WriteFailure {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge) => WriteFailure::TooLarge,
        Some(C::TopicAuthorizationFailed | C::ClusterAuthorizationFailed) => {
            WriteFailure::Fatal("grant this client's principal WRITE on the topic")
        }
        Some(C::Authentication | C::SaslAuthenticationFailed) => {
            WriteFailure::Fatal("check the credentials given with -X sasl.username/sasl.password")
        }
        Some(C::UnknownTopic | C::UnknownTopicOrPartition | C::InvalidTopic) => {
            WriteFailure::Fatal("create the topic (orderflow topics create) or name another one")
        }
        Some(C::InvalidRecord | C::InvalidRequiredAcks | C::Fatal) => {
            WriteFailure::Fatal("the broker refuses these records for good; see the error")
        }
        _ => WriteFailure::Retry,
    }
}

/// A message's headers as text (values read lossily as UTF-8; a null value is
/// empty), in their order.
pub fn text_headers<M: Message>(m: &M) -> impl Iterator<Item = (String, String)> + '_ {
    use rdkafka::message::Headers as _;
    m.headers().into_iter().flat_map(|hs| {
        hs.iter().map(|h| {
            (
                h.key.to_string(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_and_win_over_defaults() {
        assert_eq!(
            parse_override("a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert!(parse_override("novalue").is_err());
        assert!(parse_override("=x").is_err());
        let mut k = KafkaConfig::new("h:1");
        k.overrides.push(("acks".into(), "1".into()));
        let c = k.client_config(&[("acks", "all"), ("linger.ms", "5")]);
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("bootstrap.servers"), Some("h:1"));
    }
}
