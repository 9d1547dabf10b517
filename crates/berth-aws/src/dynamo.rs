//! The ledger on DynamoDB: core's `Ledger` port in one table.
//!
//! One table with a string partition key `pk` and sort key `sk`. Every
//! kind of record lives in partitions of its own, so each read is a
//! `GetItem` or a `Query`, never a scan of the whole table:
//!
//! | record | pk | sk |
//! |---|---|---|
//! | claim | `claims` | claim name |
//! | service | `services` | service name |
//! | generation | `gen#<claim>` | generation, zero-padded |
//! | event | `events` | sequence number, zero-padded |
//! | event sequence | `meta` | `event-seq` (an atomic counter) |
//! | idempotency record | `keys` | key (attribute `ttl`: DynamoDB's TTL) |
//! | task version | `task-versions` | task ARN |
//! | snapshot | `snapshots` | snapshot id |
//!
//! Records are whole JSON documents in attribute `json` beside the few
//! attributes conditions and filters need (`version`, `claim`, `expires`),
//! as the SQLite ledger stores them. Claim and service writes are
//! conditional on `version` (the compare-and-swap of rule 3); idempotency
//! records are conditional puts; task versions are conditional updates.
//! Every key starts with the ledger's *prefix*, so several ledgers (the
//! contract tests, two deployments) can share one table.
//!
//! Caveats: one partition per record kind is fine for berth's scale (a few
//! hundred claims) and not for tens of thousands; DynamoDB's TTL deletes
//! expired idempotency records within days, so `remember` also checks
//! `expires` itself, and `purge` deletes them at once.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use berth_core::deploy::ServiceRecord;
use berth_core::ledger::{ClaimRecord, EventRecord, Expect, GenerationRecord, Ledger, LedgerError, Remembered};
use berth_core::{ClaimName, Generation, SnapshotId, SnapshotRecord, TaskArn};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How long a task's newest version is remembered (as the SQLite ledger).
const TASK_VERSION_TTL: chrono::Duration = chrono::Duration::days(7);

type Item = HashMap<String, AttributeValue>;

/// A ledger in one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoLedger {
    client: Client,
    table: String,
    prefix: String,
}

impl DynamoLedger {
    /// A ledger in `table` (which must exist; see [`DynamoLedger::create_table`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), prefix: String::new() }
    }

    /// The same table, with every key under `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Creates the ledger's table (on-demand capacity, TTL on `ttl`) and
    /// waits until it is active. The CDK stack makes the same table.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), LedgerError> {
        let key = |name: &str, kind| {
            KeySchemaElement::builder().attribute_name(name).key_type(kind).build().map_err(build_error)
        };
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build_error)
        };
        client
            .create_table()
            .table_name(table)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attr("pk")?)
            .attribute_definitions(attr("sk")?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(|e| unavailable(&format!("create table {table}"), e))?;
        for _ in 0..100 {
            let described = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| unavailable(&format!("describe table {table}"), e))?;
            let active = described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| *s == aws_sdk_dynamodb::types::TableStatus::Active);
            if active {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let ttl =
            TimeToLiveSpecification::builder().enabled(true).attribute_name("ttl").build().map_err(build_error)?;
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| unavailable(&format!("enable TTL on {table}"), e))?;
        Ok(())
    }

    fn pk(&self, kind: &str) -> AttributeValue {
        AttributeValue::S(format!("{}{kind}", self.prefix))
    }

    fn key(&self, pk: &str, sk: &str) -> Item {
        HashMap::from([("pk".to_owned(), self.pk(pk)), ("sk".to_owned(), s(sk))])
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, LedgerError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable(&format!("read {pk}/{sk}"), e))?;
        Ok(out.item)
    }

    /// Every item of partition `pk` with a sort key above `after` (all when
    /// `None`), in sort-key order, consistent reads, all pages.
    async fn query(&self, pk: &str, after: Option<String>) -> Result<Vec<Item>, LedgerError> {
        self.query_some(pk, after, None, usize::MAX).await
    }

    /// Up to `want` items of `pk` after `after`, in key order, with
    /// `claim` equal to `claim` when given. Stops reading once it has
    /// enough: an event log of a long-lived stack is large, and a reader
    /// asks for a page of it.
    async fn query_some(
        &self,
        pk: &str,
        after: Option<String>,
        claim: Option<&str>,
        want: usize,
    ) -> Result<Vec<Item>, LedgerError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        while items.len() < want {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", self.pk(pk));
            q = match &after {
                Some(a) => {
                    q.key_condition_expression("pk = :pk AND sk > :after").expression_attribute_values(":after", s(a))
                }
                None => q.key_condition_expression("pk = :pk"),
            };
            if let Some(c) = claim {
                q = q
                    .filter_expression("#claim = :claim")
                    .expression_attribute_names("#claim", "claim")
                    .expression_attribute_values(":claim", s(c));
            }
            if want != usize::MAX {
                // Limit counts items read, before the filter: read a page.
                let left = want - items.len();
                q = q.limit(if claim.is_some() { 1000 } else { left.min(1000) as i32 });
            }
            let out = q
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| unavailable(&format!("query {pk}"), e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        items.truncate(want);
        Ok(items)
    }

    /// A versioned record (claim or service) written on `expect`'s terms.
    async fn put_versioned<T: Serialize>(
        &self,
        pk: &str,
        name: &str,
        record: &T,
        expect: Expect,
        extra: Item,
    ) -> Result<u64, LedgerError> {
        let what = format!("{} {name}", pk.trim_end_matches('s'));
        let (next, condition) = match expect {
            Expect::Absent => (1, "attribute_not_exists(pk)"),
            Expect::Version(v) => {
                (v.checked_add(1).ok_or_else(|| corrupt(format!("{what}: version overflow")))?, "#ver = :v")
            }
        };
        let mut item = self.key(pk, name);
        item.insert("version".into(), n(next));
        item.insert("json".into(), s(&to_json(record, &what)?));
        item.extend(extra);
        let mut put =
            self.client.put_item().table_name(&self.table).set_item(Some(item)).condition_expression(condition);
        if let Expect::Version(v) = expect {
            // Names through placeholders: some (like VALUE) are reserved words.
            put = put.expression_attribute_names("#ver", "version").expression_attribute_values(":v", n(v));
        }
        match put.send().await {
            Ok(_) => Ok(next),
            Err(e) if is_conditional(&e) => Err(LedgerError::Conflict(what)),
            Err(e) => Err(unavailable(&format!("write {what}"), e)),
        }
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> LedgerError {
    LedgerError::Unavailable(format!("building a DynamoDB request: {e}"))
}

fn corrupt(m: String) -> LedgerError {
    LedgerError::Corrupt(m)
}

fn is_conditional<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(ProvideErrorMetadata::code) == Some("ConditionalCheckFailedException")
}

/// A request that failed for a reason a retry may fix (throttling, a
/// network error) or that needs the operator (a missing table): the
/// message names the operation and DynamoDB's own words.
fn unavailable<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    what: &str,
    e: SdkError<E, R>,
) -> LedgerError {
    let detail = match e.as_service_error() {
        Some(service) => {
            format!("{}: {}", service.code().unwrap_or("error"), service.message().unwrap_or("no message"))
        }
        None => format!("{e:?}"),
    };
    LedgerError::Unavailable(format!("DynamoDB: {what}: {detail}"))
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<String, LedgerError> {
    serde_json::to_string(value).map_err(|e| corrupt(format!("cannot encode {what}: {e}")))
}

fn text<'a>(item: &'a Item, attr: &str, what: &str) -> Result<&'a str, LedgerError> {
    match item.get(attr) {
        Some(AttributeValue::S(v)) => Ok(v),
        _ => Err(corrupt(format!("{what}: attribute {attr} is missing or not a string"))),
    }
}

fn number(item: &Item, attr: &str, what: &str) -> Result<u64, LedgerError> {
    match item.get(attr) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(format!("{what}: {attr} {v:?} is not a count"))),
        _ => Err(corrupt(format!("{what}: attribute {attr} is missing or not a number"))),
    }
}

fn decode<T: DeserializeOwned>(item: &Item, what: &str) -> Result<T, LedgerError> {
    serde_json::from_str(text(item, "json", what)?).map_err(|e| corrupt(format!("unreadable {what}: {e}")))
}

fn time_key(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Ledger for DynamoLedger {
    async fn claim(&self, name: &ClaimName) -> Result<Option<ClaimRecord>, LedgerError> {
        let Some(item) = self.get("claims", name.as_str()).await? else { return Ok(None) };
        let what = format!("claim {name}");
        let mut record: ClaimRecord = decode(&item, &what)?;
        record.version = number(&item, "version", &what)?;
        Ok(Some(record))
    }

    async fn claims(&self) -> Result<Vec<ClaimRecord>, LedgerError> {
        let mut out = Vec::new();
        for item in self.query("claims", None).await? {
            let what = format!("claim {}", text(&item, "sk", "a claim")?);
            let mut record: ClaimRecord = decode(&item, &what)?;
            record.version = number(&item, "version", &what)?;
            out.push(record);
        }
        Ok(out)
    }

    async fn put_claim(&self, record: &ClaimRecord, expect: Expect) -> Result<ClaimRecord, LedgerError> {
        let extra = HashMap::from([("service".to_owned(), s(&record.service))]);
        let version = self.put_versioned("claims", record.name.as_str(), record, expect, extra).await?;
        Ok(ClaimRecord { version, ..record.clone() })
    }

    async fn service(&self, name: &str) -> Result<Option<ServiceRecord>, LedgerError> {
        let Some(item) = self.get("services", name).await? else { return Ok(None) };
        let what = format!("service {name}");
        let mut record: ServiceRecord = decode(&item, &what)?;
        record.version = number(&item, "version", &what)?;
        Ok(Some(record))
    }

    async fn put_service(&self, record: &ServiceRecord, expect: Expect) -> Result<ServiceRecord, LedgerError> {
        let version = self.put_versioned("services", &record.name, record, expect, HashMap::new()).await?;
        Ok(ServiceRecord { version, ..record.clone() })
    }

    async fn put_generation(&self, record: &GenerationRecord) -> Result<(), LedgerError> {
        let what = format!("generation {} of {}", record.generation, record.claim);
        let (pk, sk) = (format!("gen#{}", record.claim), format!("{:020}", record.generation.0));
        self.put_json(&pk, &sk, record, None, &what).await
    }

    async fn generation(
        &self,
        claim: &ClaimName,
        generation: Generation,
    ) -> Result<Option<GenerationRecord>, LedgerError> {
        let item = self.get(&format!("gen#{claim}"), &format!("{:020}", generation.0)).await?;
        item.map(|i| decode(&i, &format!("generation {generation} of {claim}"))).transpose()
    }

    async fn generations(&self, claim: &ClaimName) -> Result<Vec<GenerationRecord>, LedgerError> {
        let items = self.query(&format!("gen#{claim}"), None).await?;
        items.iter().map(|i| decode(i, &format!("a generation of {claim}"))).collect()
    }

    async fn append_event(&self, event: &EventRecord) -> Result<u64, LedgerError> {
        // The sequence number is an atomic counter: numbers are never reused.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key("meta", "event-seq")))
            .update_expression("ADD #n :one")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| unavailable("advance the event sequence", e))?;
        let attrs = out.attributes.unwrap_or_default();
        let seq = number(&attrs, "n", "the event sequence")?;
        let stored = EventRecord { seq, ..event.clone() };
        self.put_json("events", &format!("{seq:020}"), &stored, event.claim.as_ref(), &format!("event {seq}")).await?;
        Ok(seq)
    }

    async fn events(
        &self,
        after: u64,
        claim: Option<&ClaimName>,
        limit: usize,
    ) -> Result<Vec<EventRecord>, LedgerError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let items =
            self.query_some("events", Some(format!("{after:020}")), claim.map(ClaimName::as_str), limit).await?;
        items.iter().map(|item| decode(item, "an event")).collect()
    }

    async fn remember(
        &self,
        key: &str,
        value: &str,
        now: DateTime<Utc>,
        expires: DateTime<Utc>,
    ) -> Result<Remembered, LedgerError> {
        let mut item = self.key("keys", key);
        item.insert("value".into(), s(value));
        item.insert("expires".into(), s(&time_key(expires)));
        item.insert("ttl".into(), n(expires.timestamp()));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // An expired record may be replaced before DynamoDB's TTL removes it.
            .condition_expression("attribute_not_exists(pk) OR expires <= :now")
            .expression_attribute_values(":now", s(&time_key(now)))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Remembered::New),
            Err(e) if is_conditional(&e) => {
                let item = self.get("keys", key).await?;
                let seen = item.as_ref().map(|i| text(i, "value", &format!("key {key}")).map(str::to_owned));
                Ok(Remembered::Seen(seen.transpose()?.unwrap_or_default()))
            }
            Err(e) => Err(unavailable(&format!("remember {key}"), e)),
        }
    }

    async fn observe_task_version(
        &self,
        task: &TaskArn,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, LedgerError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key("task-versions", &task.0)))
            .update_expression("SET #ver = :v, updated = :now, #ttl = :ttl")
            .condition_expression("attribute_not_exists(#ver) OR #ver < :v")
            .expression_attribute_names("#ver", "version")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":v", n(version))
            .expression_attribute_values(":now", s(&time_key(now)))
            .expression_attribute_values(":ttl", n((now + TASK_VERSION_TTL).timestamp()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(true),
            Err(e) if is_conditional(&e) => Ok(false),
            Err(e) => Err(unavailable(&format!("record the version of {task}"), e)),
        }
    }

    async fn catalogue(&self, snapshots: &[SnapshotRecord]) -> Result<(), LedgerError> {
        for snap in snapshots {
            let what = format!("snapshot {}", snap.id);
            self.put_json("snapshots", &snap.id.0, snap, snap.claim.as_ref(), &what).await?;
        }
        Ok(())
    }

    async fn uncatalogue(&self, ids: &[SnapshotId]) -> Result<(), LedgerError> {
        for id in ids {
            self.client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(self.key("snapshots", &id.0)))
                .send()
                .await
                .map_err(|e| unavailable(&format!("uncatalogue snapshot {id}"), e))?;
        }
        Ok(())
    }

    async fn snapshots(&self, claim: Option<&ClaimName>) -> Result<Vec<SnapshotRecord>, LedgerError> {
        let mut out: Vec<SnapshotRecord> = Vec::new();
        for item in self.query("snapshots", None).await? {
            if claim.is_some_and(|c| item.get("claim") != Some(&s(c.as_str()))) {
                continue;
            }
            out.push(decode(&item, "a snapshot")?);
        }
        out.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    async fn purge(&self, now: DateTime<Utc>) -> Result<u64, LedgerError> {
        let mut gone = 0;
        let now_key = time_key(now);
        for item in self.query("keys", None).await? {
            if text(&item, "expires", "an idempotency record")? <= now_key.as_str() {
                let sk = text(&item, "sk", "an idempotency record")?.to_owned();
                self.delete("keys", &sk).await?;
                gone += 1;
            }
        }
        let old = time_key(now - TASK_VERSION_TTL);
        for item in self.query("task-versions", None).await? {
            if text(&item, "updated", "a task version")? < old.as_str() {
                let sk = text(&item, "sk", "a task version")?.to_owned();
                self.delete("task-versions", &sk).await?;
                gone += 1;
            }
        }
        Ok(gone)
    }
}

impl DynamoLedger {
    /// Writes the record `value` (as JSON) at (`pk`, `sk`), unconditionally,
    /// with the claim it belongs to as an attribute for filters.
    async fn put_json<T: Serialize>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        claim: Option<&ClaimName>,
        what: &str,
    ) -> Result<(), LedgerError> {
        let mut item = self.key(pk, sk);
        item.insert("json".into(), s(&to_json(value, what)?));
        if let Some(c) = claim {
            item.insert("claim".into(), s(c.as_str()));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| unavailable(&format!("write {what}"), e))?;
        Ok(())
    }

    async fn delete(&self, pk: &str, sk: &str) -> Result<(), LedgerError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(pk, sk)))
            .send()
            .await
            .map_err(|e| unavailable(&format!("delete {pk}/{sk}"), e))?;
        Ok(())
    }
}
