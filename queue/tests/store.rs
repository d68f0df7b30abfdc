//! The job store's contract, run against both of its databases: PostgreSQL
//! (each test on a database of its own) and SQLite (each on a file of its own).
//!
//! The PostgreSQL server is `TILEFARM_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); `scripts/test` starts it.

use std::collections::HashSet;

use serde_json::json;
use tilefarm_queue::{
    ChangeKind, Completion, INGEST_QUEUE, INTERACTIVE_QUEUE, JobKind, JobState, JobStore, NewLayer,
    RENDER_QUEUE, RenderTask, Stage, StoreError, TaskKind, TileSweep, Upload,
};
use uuid::Uuid;

mod common;
use common::TestDb;

on_both_stores!(
    migrations_apply_once_and_again_harmlessly,
    an_upload_is_a_queued_job_with_its_message_in_the_outbox,
    bad_layers_are_refused_and_leave_nothing_behind,
    progress_rises_once_per_task_and_ends_exactly_at_the_total,
    concurrent_and_repeated_completions_count_each_task_once,
    a_cancelled_job_drops_its_remaining_tasks,
    a_failed_job_says_why,
    relays_send_every_message_once_and_keep_what_was_not_confirmed,
    changes_to_a_layer_run_one_at_a_time_in_order,
    a_change_waits_for_tiles_a_worker_still_writes_for_an_ended_job,
    a_layer_is_deleted_whole_and_only_once_no_job_of_it_is_under_way,
    deliveries_are_counted_until_an_attempt_settles_them,
    the_sweep_finds_versions_that_will_never_be_published,
);

fn layer(name: &str) -> NewLayer {
    NewLayer {
        name: name.into(),
        min_zoom: 0,
        max_zoom: 5,
        style: json!({}),
    }
}

fn tasks(count: u32, tiles: u32) -> Vec<RenderTask> {
    (0..count)
        .map(|i| RenderTask {
            z: 5,
            x: i * 8 % 32,
            y: i * 8 / 32 * 8,
            n: 8,
            tiles,
            ..RenderTask::default()
        })
        .collect()
}

/// An upload planned into `count` render tasks of `tiles` tiles each.
async fn planned(db: &TestDb, count: u32, tiles: u32) -> (Upload, Vec<Uuid>) {
    let up = db
        .store
        .create_upload(&layer("world"), "uploads/w")
        .await
        .unwrap();
    let ids = db
        .store
        .plan(up.job_id, up.ingest_task, &tasks(count, tiles))
        .await
        .unwrap();
    (up, ids)
}

async fn migrations_apply_once_and_again_harmlessly(db: TestDb) {
    db.store
        .migrate()
        .await
        .expect("a second run applies nothing and fails nothing");
    let applied: i64 = db
        .scalar(db.query("SELECT count(*) FROM _sqlx_migrations"))
        .await;
    let migrator = if db.is_postgres() {
        &tilefarm_queue::MIGRATOR
    } else {
        &tilefarm_queue::SQLITE_MIGRATOR
    };
    assert_eq!(applied as usize, migrator.iter().count());
    db.drop().await;
}

async fn an_upload_is_a_queued_job_with_its_message_in_the_outbox(db: TestDb) {
    let up = db
        .store
        .create_upload(&layer("world"), "uploads/world.geojson")
        .await
        .unwrap();
    let job = db.store.job(up.job_id).await.unwrap().expect("the job");
    assert_eq!(
        (job.state, job.stage, job.kind),
        (JobState::Queued, Stage::Queued, JobKind::Upload)
    );
    assert_eq!((job.tiles_total, job.tiles_done), (None, 0));
    assert_eq!(job.layer_id, up.layer_id);
    let published: Option<i32> = db
        .scalar(
            db.query("SELECT published_version FROM layers WHERE id = $1")
                .bind(up.layer_id),
        )
        .await;
    assert_eq!(
        published, None,
        "the layer is not visible before it is rendered"
    );
    let messages = db.outbox().await;
    assert_eq!(
        messages,
        vec![(
            INGEST_QUEUE.to_string(),
            json!({"task": up.ingest_task, "job": up.job_id})
        )]
    );
    assert!(db.store.job(Uuid::new_v4()).await.unwrap().is_none());
    db.drop().await;
}

async fn bad_layers_are_refused_and_leave_nothing_behind(db: TestDb) {
    for (bad, expected) in [
        (
            NewLayer {
                min_zoom: 6,
                max_zoom: 2,
                ..layer("x")
            },
            "zoom range 6-2",
        ),
        (
            NewLayer {
                max_zoom: 25,
                ..layer("x")
            },
            "zoom range 0-25",
        ),
        (layer(""), "layer name"),
        (layer(&"n".repeat(201)), "layer name"),
    ] {
        let err = db.store.create_upload(&bad, "uploads/x").await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
        assert!(
            err.to_string().contains(expected),
            "{err} should mention {expected:?}"
        );
    }
    let layers: i64 = db.scalar(db.query("SELECT count(*) FROM layers")).await;
    assert_eq!(layers, 0);
    assert!(db.outbox().await.is_empty());
    db.drop().await;
}

async fn progress_rises_once_per_task_and_ends_exactly_at_the_total(db: TestDb) {
    let (up, ids) = planned(&db, 6, 64).await;
    let job = db.store.job(up.job_id).await.unwrap().unwrap();
    assert_eq!((job.state, job.stage), (JobState::Running, Stage::Render));
    assert_eq!((job.tiles_total, job.tiles_done), (Some(6 * 64), 0));
    assert_eq!(
        db.outbox()
            .await
            .iter()
            .filter(|(q, _)| q == RENDER_QUEUE)
            .count(),
        6
    );

    let mut last = 0;
    for (i, id) in ids.iter().enumerate() {
        let c = db.store.complete_task(*id).await.unwrap();
        assert_eq!(
            c,
            Completion::Counted {
                job_id: up.job_id,
                finished: i == ids.len() - 1
            }
        );
        // A redelivery of the same task counts nothing.
        assert_eq!(
            db.store.complete_task(*id).await.unwrap(),
            Completion::AlreadySettled
        );
        let done = db.store.job(up.job_id).await.unwrap().unwrap().tiles_done;
        assert_eq!(done, last + 64);
        last = done;
    }
    let job = db.store.job(up.job_id).await.unwrap().unwrap();
    assert_eq!((job.state, job.tiles_done), (JobState::Succeeded, 6 * 64));
    assert!(job.finished_at.is_some() && job.started_at.is_some());
    let published: Option<i32> = db
        .scalar(
            db.query("SELECT published_version FROM layers WHERE id = $1")
                .bind(up.layer_id),
        )
        .await;
    assert_eq!(published, Some(1));
    db.drop().await;
}

async fn concurrent_and_repeated_completions_count_each_task_once(db: TestDb) {
    let (up, ids) = planned(&db, 40, 16).await;
    // Every task completed three times over, from many tasks at once.
    let mut handles = Vec::new();
    for round in 0..3 {
        for id in &ids {
            let (store, id) = (db.store.clone(), *id);
            handles.push(tokio::spawn(async move {
                (round, store.complete_task(id).await.unwrap())
            }));
        }
    }
    let mut counted = 0;
    let mut finished = 0;
    for h in handles {
        if let (_, Completion::Counted { finished: f, .. }) = h.await.unwrap() {
            counted += 1;
            finished += usize::from(f);
        }
    }
    assert_eq!(counted, 40, "each task counted once");
    assert_eq!(finished, 1, "one completion finished the job");
    let job = db.store.job(up.job_id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.tiles_done, job.tiles_total),
        (JobState::Succeeded, 640, Some(640))
    );
    db.drop().await;
}

async fn a_cancelled_job_drops_its_remaining_tasks(db: TestDb) {
    let (up, ids) = planned(&db, 4, 64).await;
    db.store.complete_task(ids[0]).await.unwrap();
    assert!(db.store.cancel_job(up.job_id).await.unwrap());
    assert_eq!(
        db.store.complete_task(ids[1]).await.unwrap(),
        Completion::AlreadySettled
    );
    let job = db.store.job(up.job_id).await.unwrap().unwrap();
    assert_eq!((job.state, job.tiles_done), (JobState::Cancelled, 64));
    assert!(
        !db.store.cancel_job(up.job_id).await.unwrap(),
        "an ended job stays as it ended"
    );
    assert!(!db.store.fail_job(up.job_id, "x", "y").await.unwrap());
    let err = db
        .store
        .plan(up.job_id, up.ingest_task, &tasks(1, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    db.drop().await;
}

async fn a_failed_job_says_why(db: TestDb) {
    let up = db
        .store
        .create_upload(&layer("world"), "uploads/w")
        .await
        .unwrap();
    let msg = "features[3], id \"FRA\": geometry.coordinates[0]: the ring is not closed";
    assert!(
        db.store
            .fail_job(up.job_id, "invalid_geojson", msg)
            .await
            .unwrap()
    );
    let job = db.store.job(up.job_id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        (job.error_code.as_deref(), job.error_message.as_deref()),
        (Some("invalid_geojson"), Some(msg))
    );
    let pending: i64 = db
        .scalar(db.query("SELECT count(*) FROM tasks WHERE state = 'pending'"))
        .await;
    assert_eq!(pending, 0, "no task is left to run");
    let err = db.store.complete_task(Uuid::new_v4()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    db.drop().await;
}

async fn relays_send_every_message_once_and_keep_what_was_not_confirmed(db: TestDb) {
    let up = db
        .store
        .create_upload(&layer("world"), "uploads/w")
        .await
        .unwrap();
    db.store
        .plan(up.job_id, up.ingest_task, &tasks(30, 1))
        .await
        .unwrap();
    let total = db.outbox().await.len();
    assert_eq!(total, 31);
    // Two relays at once, each taking batches until nothing is left (on
    // PostgreSQL: SQLite's store belongs to one process, with one relay).
    let relay = |store: JobStore| async move {
        let mut seen = Vec::new();
        loop {
            let mut batch = Vec::new();
            let n = store
                .relay_outbox(7, |msgs| {
                    batch = msgs.iter().map(|m| m.id).collect();
                    let ids = batch.clone();
                    async move { ids }
                })
                .await
                .unwrap();
            if n == 0 {
                break seen;
            }
            seen.extend(batch);
        }
    };
    let (a, b) = if db.is_postgres() {
        tokio::join!(relay(db.store.clone()), relay(db.store.clone()))
    } else {
        (relay(db.store.clone()).await, Vec::new())
    };
    let all: HashSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), total, "no message was sent twice");
    assert_eq!(all.len(), total, "every message was sent");
    // A message the broker did not confirm stays for the next relay.
    let up2 = db
        .store
        .create_upload(&layer("again"), "uploads/a")
        .await
        .unwrap();
    assert_eq!(
        db.store
            .relay_outbox(10, |_| async { Vec::new() })
            .await
            .unwrap(),
        0
    );
    let left: Vec<serde_json::Value> = db
        .rows(db.query("SELECT payload FROM outbox WHERE published_at IS NULL"))
        .await
        .iter()
        .map(|r| r.get::<sqlx::types::Json<_>>(0).unwrap().0)
        .collect();
    assert_eq!(
        left,
        vec![json!({"task": up2.ingest_task, "job": up2.job_id})]
    );
    db.drop().await;
}

async fn changes_to_a_layer_run_one_at_a_time_in_order(db: TestDb) {
    let (up, ids) = planned(&db, 2, 64).await;
    let before = db.outbox().await.len();
    // Accepted while the upload renders: both wait, with no message sent.
    let edit = db
        .store
        .create_change(up.layer_id, ChangeKind::Edit, "uploads/e1")
        .await
        .unwrap();
    let replace = db
        .store
        .create_change(up.layer_id, ChangeKind::Replace, "uploads/r")
        .await
        .unwrap();
    assert!(edit.waiting && replace.waiting);
    assert_eq!((edit.version, replace.version), (2, 3));
    assert_eq!(db.outbox().await.len(), before);
    let status = db.store.job(edit.job_id).await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.stage, status.kind),
        (JobState::Queued, Stage::Waiting, JobKind::Edit)
    );
    // The upload ends: the edit (only) starts, on the interactive queue.
    for id in &ids {
        db.store.complete_task(*id).await.unwrap();
    }
    let sent = db.outbox().await;
    assert_eq!(sent.len(), before + 1);
    assert_eq!(sent[before].0, INTERACTIVE_QUEUE);
    assert_eq!(sent[before].1["task"], json!(edit.task_id));
    // An edit's render tasks go to the interactive queue too, and once they are
    // done the job reports its changed tiles before it succeeds.
    let dirty = RenderTask {
        z: 3,
        n: 8,
        tiles: 2,
        dirty: Some(vec![0b11, 0, 0, 0, 0, 0, 0, 0]),
        replaces: true,
        ..RenderTask::default()
    };
    db.store
        .record_prepared(up.layer_id, 2, "layers/l/v2/features.geojsons", 10, None)
        .await
        .unwrap();
    let render = db
        .store
        .plan(edit.job_id, edit.task_id, std::slice::from_ref(&dirty))
        .await
        .unwrap();
    assert_eq!(db.outbox().await.last().unwrap().0, INTERACTIVE_QUEUE);
    assert_eq!(
        db.store.render_tasks(edit.job_id).await.unwrap(),
        vec![dirty]
    );
    let c = db.store.complete_task(render[0]).await.unwrap();
    assert_eq!(
        c,
        Completion::Counted {
            job_id: edit.job_id,
            finished: false
        }
    );
    let status = db.store.job(edit.job_id).await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.stage),
        (JobState::Running, Stage::Invalidate)
    );
    let (queue, payload) = db.outbox().await.last().unwrap().clone();
    assert_eq!(queue, INTERACTIVE_QUEUE);
    let invalidate: Uuid = serde_json::from_value(payload["task"].clone()).unwrap();
    assert_eq!(
        db.store
            .task_context(invalidate)
            .await
            .unwrap()
            .unwrap()
            .kind,
        TaskKind::Invalidate
    );
    let c = db.store.complete_task(invalidate).await.unwrap();
    assert_eq!(
        c,
        Completion::Counted {
            job_id: edit.job_id,
            finished: true
        }
    );
    assert_eq!(
        db.store
            .layer(up.layer_id)
            .await
            .unwrap()
            .unwrap()
            .published_version,
        Some(2)
    );
    // Then the replacement, on the ingest queue, building on version 2.
    let (queue, payload) = db.outbox().await.last().unwrap().clone();
    assert_eq!(
        (queue.as_str(), &payload["task"]),
        (INGEST_QUEUE, &json!(replace.task_id))
    );
    let base = db.store.change_base(up.layer_id).await.unwrap();
    assert_eq!(base.published.map(|p| p.0), Some(2));
    assert!(base.unfinished.is_empty());
    // A cancelled change leaves its tiles for the next one to set right.
    db.store
        .plan(replace.job_id, replace.task_id, &tasks(1, 64))
        .await
        .unwrap();
    db.store.cancel_job(replace.job_id).await.unwrap();
    let base = db.store.change_base(up.layer_id).await.unwrap();
    assert_eq!(base.unfinished, tasks(1, 64));
    // An unknown layer takes no change.
    let unknown = db
        .store
        .create_change(Uuid::new_v4(), ChangeKind::Edit, "uploads/x")
        .await;
    assert!(
        matches!(unknown, Err(StoreError::NotFound(_))),
        "{unknown:?}"
    );
    db.drop().await;
}

async fn a_change_waits_for_tiles_a_worker_still_writes_for_an_ended_job(db: TestDb) {
    let (up, ids) = planned(&db, 2, 64).await;
    // A worker takes the first task; then the job is cancelled.
    assert!(db.store.claim_task(ids[0]).await.unwrap());
    db.store.cancel_job(up.job_id).await.unwrap();
    assert!(
        !db.store.claim_task(ids[1]).await.unwrap(),
        "a task of an ended job is not taken"
    );
    // A change now waits: that worker may still be writing tiles.
    let before = db.outbox().await.len();
    let change = db
        .store
        .create_change(up.layer_id, ChangeKind::Replace, "uploads/r")
        .await
        .unwrap();
    assert!(change.waiting);
    assert_eq!(db.store.start_waiting().await.unwrap(), 0);
    assert_eq!(db.outbox().await.len(), before);
    // The worker finishes: nothing is counted, and the change starts.
    assert_eq!(
        db.store.complete_task(ids[0]).await.unwrap(),
        Completion::AlreadySettled
    );
    let sent = db.outbox().await;
    assert_eq!(sent.len(), before + 1);
    assert_eq!(sent[before].1["task"], json!(change.task_id));
    assert_eq!(
        db.store.job(up.job_id).await.unwrap().unwrap().tiles_done,
        0
    );

    // A worker that vanished holding a task: released when the task is
    // delivered again (or its lease runs out).
    let edit = db
        .store
        .create_change(up.layer_id, ChangeKind::Edit, "uploads/e")
        .await
        .unwrap();
    let render = db
        .store
        .plan(change.job_id, change.task_id, &tasks(1, 64))
        .await
        .unwrap();
    assert!(db.store.claim_task(render[0]).await.unwrap());
    let before = db.outbox().await.len();
    db.store
        .fail_job(change.job_id, "task_failed", "gone")
        .await
        .unwrap();
    assert_eq!(
        db.outbox().await.len(),
        before,
        "the edit waits for the task"
    );
    db.store.release_task(render[0]).await.unwrap();
    let sent = db.outbox().await;
    assert_eq!(sent.len(), before + 1);
    assert_eq!(sent[before].1["task"], json!(edit.task_id));
    db.drop().await;
}

async fn a_layer_is_deleted_whole_and_only_once_no_job_of_it_is_under_way(db: TestDb) {
    let (up, _) = planned(&db, 2, 64).await;
    match db.store.delete_layer(up.layer_id).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("cancel"), "{m}"),
        other => panic!("a layer with a running job was deleted: {other:?}"),
    }
    assert!(db.store.layer(up.layer_id).await.unwrap().is_some());
    assert!(db.store.cancel_job(up.job_id).await.unwrap());
    let sources = db.store.delete_layer(up.layer_id).await.unwrap();
    assert_eq!(sources, Some(vec!["uploads/w".to_string()]));
    assert!(db.store.layer(up.layer_id).await.unwrap().is_none());
    assert!(db.store.job(up.job_id).await.unwrap().is_none());
    let left: i64 = db.scalar(db.query("SELECT count(*) FROM tasks")).await;
    assert_eq!(left, 0, "the layer's tasks went with it");
    assert_eq!(db.store.delete_layer(up.layer_id).await.unwrap(), None);
    db.drop().await;
}

async fn deliveries_are_counted_until_an_attempt_settles_them(db: TestDb) {
    let (_, render) = planned(&db, 2, 64).await;
    let (t, other) = (render[0], render[1]);
    assert_eq!(db.store.count_delivery(t).await.unwrap(), Some(1));
    assert_eq!(db.store.count_delivery(t).await.unwrap(), Some(2));
    assert_eq!(
        db.store.count_delivery(other).await.unwrap(),
        Some(1),
        "each task has its own count"
    );
    db.store
        .record_attempt(t, "the store blinked")
        .await
        .unwrap();
    assert_eq!(
        db.store.count_delivery(t).await.unwrap(),
        Some(1),
        "a settled attempt starts the count again"
    );
    db.store.complete_task(t).await.unwrap();
    assert_eq!(
        db.store.count_delivery(t).await.unwrap(),
        None,
        "a done task is not counted"
    );
    assert_eq!(db.store.count_delivery(Uuid::new_v4()).await.unwrap(), None);
    db.drop().await;
}

async fn the_sweep_finds_versions_that_will_never_be_published(db: TestDb) {
    let later = || chrono::Utc::now() + chrono::Duration::seconds(5);
    // Published: never an orphan, nor are its tiles swept.
    let (kept, ids) = planned(&db, 1, 64).await;
    db.store.complete_task(ids[0]).await.unwrap();
    // An edit of the published layer, to fail: its data goes, its tiles stay.
    let edit = db
        .store
        .create_change(kept.layer_id, ChangeKind::Edit, "uploads/e")
        .await
        .unwrap();
    // A first upload, to cancel: its data and its tiles go.
    let (cut, _) = planned(&db, 2, 64).await;
    // Still running: not an orphan.
    let (live, _) = planned(&db, 1, 64).await;
    assert!(
        db.store.orphans(later(), 10).await.unwrap().is_empty(),
        "nothing ended"
    );
    assert!(
        db.store
            .fail_job(edit.job_id, "unknown_feature", "no id 7")
            .await
            .unwrap()
    );
    assert!(db.store.cancel_job(cut.job_id).await.unwrap());
    let before_end = chrono::Utc::now() - chrono::Duration::seconds(60);
    assert!(
        db.store.orphans(before_end, 10).await.unwrap().is_empty(),
        "ended too recently"
    );
    let orphans = db.store.orphans(later(), 10).await.unwrap();
    let found: Vec<(Uuid, i32, &str)> = orphans
        .iter()
        .map(|o| (o.job_id, o.version, o.source_key.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![(edit.job_id, 2, "uploads/e"), (cut.job_id, 1, "uploads/w")],
        "the longest ended first"
    );
    assert!(
        orphans
            .iter()
            .all(|o| o.job_id != live.job_id && o.job_id != kept.job_id)
    );
    assert_eq!(
        db.store.tile_sweep(&orphans[0]).await.unwrap(),
        TileSweep::Keep
    );
    assert_eq!(
        db.store.tile_sweep(&orphans[1]).await.unwrap(),
        TileSweep::Begin
    );
    // While the tiles are swept, the layer's next job waits.
    let next = db
        .store
        .create_change(cut.layer_id, ChangeKind::Replace, "uploads/n")
        .await
        .unwrap();
    assert!(
        next.waiting,
        "a job of a layer whose tiles are being swept waits"
    );
    assert_eq!(
        db.store.tile_sweep(&orphans[1]).await.unwrap(),
        TileSweep::Later,
        "not twice at once, nor under a job"
    );
    for o in &orphans {
        db.store.mark_swept(o).await.unwrap();
    }
    assert!(
        db.store.orphans(later(), 10).await.unwrap().is_empty(),
        "swept once"
    );
    db.drop().await;
}
