//! Dead letters in the job store: recorded, listed, replayed, and stale once
//! replayed.

use serde_json::json;
use tilefarm_queue::{JobState, NewLayer, RenderTask, Replayed, TaskMessage};
use uuid::Uuid;

mod common;
use common::TestDb;

on_both_stores!(
    a_replay_runs_the_failed_job_again_and_makes_the_old_letters_stale,
    a_job_that_ended_another_way_is_not_replayed,
);

/// A job planned into three render tasks of 4 tiles each.
async fn planned(db: &TestDb) -> (Uuid, Vec<Uuid>) {
    let layer = NewLayer {
        name: "world".into(),
        min_zoom: 0,
        max_zoom: 5,
        style: json!({}),
    };
    let up = db.store.create_upload(&layer, "uploads/w").await.unwrap();
    let tasks: Vec<RenderTask> = (0..3)
        .map(|x| RenderTask {
            z: 2,
            x,
            y: 0,
            n: 2,
            tiles: 4,
            ..RenderTask::default()
        })
        .collect();
    let ids = db
        .store
        .plan(up.job_id, up.ingest_task, &tasks)
        .await
        .unwrap();
    (up.job_id, ids)
}

async fn a_replay_runs_the_failed_job_again_and_makes_the_old_letters_stale(db: TestDb) {
    let store = &db.store;
    let (job, ids) = planned(&db).await;
    store.complete_task(ids[0]).await.unwrap();
    store.record_attempt(ids[1], "boom").await.unwrap();
    store.record_attempt(ids[1], "boom again").await.unwrap();
    assert!(
        store
            .record_dead_letter(ids[1], 0, "it failed")
            .await
            .unwrap()
    );
    // A second report of the same letter changes nothing.
    assert!(store.record_dead_letter(ids[1], 0, "later").await.unwrap());
    assert!(
        store
            .fail_job(job, "task_failed", "it failed")
            .await
            .unwrap()
    );

    let listed = store.dead_letters(None).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let letter = &listed[0];
    assert_eq!((letter.task_id, letter.job_id), (ids[1], job));
    assert_eq!((letter.attempts, letter.reason.as_str()), (2, "it failed"));
    assert_eq!(letter.metatile, Some((2, 1, 0, 2)));
    assert_eq!(letter.job_state, JobState::Failed);
    let (first, last) = (letter.first_failure.unwrap(), letter.last_failure.unwrap());
    assert!(first <= last && last <= letter.dead_at, "{letter:?}");
    assert!(
        store
            .dead_letters(Some(Uuid::new_v4()))
            .await
            .unwrap()
            .is_empty()
    );

    let replayed = store.replay_dead_letters(Some(job)).await.unwrap();
    assert_eq!(
        replayed,
        [Replayed {
            job_id: job,
            dead_letters: 1,
            // The dead letter and the task the failure cancelled, not the one done.
            queued: 2,
            skipped: None,
        }]
    );
    let status = store.job(job).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running);
    assert_eq!((status.error_code, status.finished_at), (None, None));
    assert_eq!(status.tiles_done, 4, "the tiles done still count");
    let sent: Vec<serde_json::Value> = db.outbox().await.into_iter().map(|m| m.1).collect();
    for task in &ids[1..] {
        let message = json!({"task": task, "job": job, "replay": 1});
        assert!(sent.contains(&message), "{sent:?}");
    }
    let context = store.task_context(ids[1]).await.unwrap().unwrap();
    assert_eq!((context.attempts, context.is_live()), (0, true));
    assert!(store.dead_letters(None).await.unwrap().is_empty());

    // The letter from before the replay, reported late, is stale.
    assert!(!store.record_dead_letter(ids[1], 0, "late").await.unwrap());
    assert!(
        !store
            .record_dead_letter(Uuid::new_v4(), 0, "?")
            .await
            .unwrap()
    );
    let letters = [
        TaskMessage {
            task: ids[1],
            job,
            replay: 0,
        },
        TaskMessage {
            task: ids[1],
            job,
            replay: 1,
        },
        TaskMessage {
            task: Uuid::new_v4(),
            job,
            replay: 0,
        },
    ];
    assert_eq!(
        store.stale_letters(&letters).await.unwrap(),
        [true, false, false]
    );
    store.complete_task(ids[1]).await.unwrap();
    store.complete_task(ids[2]).await.unwrap();
    let status = store.job(job).await.unwrap().unwrap();
    assert_eq!((status.state, status.tiles_done), (JobState::Succeeded, 12));
    db.drop().await;
}

async fn a_job_that_ended_another_way_is_not_replayed(db: TestDb) {
    let store = &db.store;
    let (job, ids) = planned(&db).await;
    assert!(
        store
            .record_dead_letter(ids[0], 0, "it failed")
            .await
            .unwrap()
    );
    store.cancel_job(job).await.unwrap();
    let replayed = store.replay_dead_letters(None).await.unwrap();
    assert_eq!(replayed.len(), 1);
    let why = replayed[0].skipped.as_deref().unwrap();
    assert!(why.contains("cancelled"), "{why}");
    assert_eq!(replayed[0].queued, 0);
    assert_eq!(
        store.job(job).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        store.dead_letters(None).await.unwrap().len(),
        1,
        "still listed"
    );
    db.drop().await;
}
