//! Runs `orderflow process` as its own process, as users run it, so that its
//! memory is its own and not the benchmark's or the embedded broker's.

use std::{path::Path, process::Stdio, time::Duration};

use super::Error;
use crate::{kafka::KafkaConfig, processor::Summary};

pub struct ProcessRun {
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
    /// Store URL.
    pub store: String,
    pub fail_when: Option<String>,
    /// Matching orders fail only their first N attempts (`--fail-attempts`).
    pub fail_attempts: Option<u32>,
}

/// Runs the processor over everything in the topic and returns its summary.
pub async fn process(exe: &Path, kafka: &KafkaConfig, run: &ProcessRun) -> Result<Summary, Error> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("process")
        .arg("--bootstrap-servers")
        .arg(&kafka.bootstrap_servers)
        .args(["--topic", &run.topic, "--dlq-topic", &run.dlq_topic]);
    for (flag, settings) in [("-C", &kafka.consumer_settings), ("-X", &kafka.overrides)] {
        for (k, v) in settings {
            cmd.arg(flag).arg(format!("{k}={v}"));
        }
    }
    cmd.args([
        "--quiet",
        "--exit-at-end",
        "--summary",
        "json",
        "--max-retries",
        "3",
        "--backoff",
        "1s",
        "--group",
        &run.group,
        "--store",
        &run.store,
    ]);
    if let Some(rule) = &run.fail_when {
        cmd.arg("--fail-when").arg(rule);
    }
    if let Some(n) = run.fail_attempts {
        cmd.arg("--fail-attempts").arg(n.to_string());
    }
    // Settings in our environment (ORDERFLOW_FAIL_WHEN, say) must not change
    // what is measured; the log filter may pass.
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("ORDERFLOW_") && k != "ORDERFLOW_LOG" {
            cmd.env_remove(&key);
        }
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child_error = |detail: String| Error::Child {
        exe: exe.display().to_string(),
        detail,
    };
    let out = tokio::time::timeout(Duration::from_secs(1800), cmd.output())
        .await
        .map_err(|_| child_error("did not finish within 30 minutes".into()))?
        .map_err(|e| child_error(format!("could not be started: {e}")))?;
    if !out.status.success() {
        return Err(child_error(format!(
            "{} (its errors are above)",
            out.status
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| child_error("printed no summary".into()))?;
    serde_json::from_str(line).map_err(|e| child_error(format!("unreadable summary {line:?}: {e}")))
}
