use invigil_actors::domain::ids::FileId;
use invigil_actors::ports::{FileStore, NewFile, PutFileOutcome};
use invigil_store::SqlStore;

use crate::support::t;

crate::conformance!(
    a_file_reads_back_in_ranges,
    identical_content_is_stored_once,
    racing_identical_uploads_end_on_one_row,
    an_empty_file_is_a_file,
);

/// Bytes that do not repeat within a chunk (xorshift), so a range read from
/// the wrong offset cannot pass for the right one.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

fn new_file(id: &str, data: Vec<u8>, digest: &str, content_type: &str, name: &str) -> NewFile {
    NewFile {
        id: FileId::parse(id).unwrap(),
        sha256: digest.repeat(64 / digest.len()),
        content_type: content_type.into(),
        name: Some(name.into()),
        data,
        created_at: t(1_000),
    }
}

const CHUNK: u32 = 256 * 1024;

async fn a_file_reads_back_in_ranges(store: &SqlStore) {
    let data = noise(600 * 1024 + 7, 42);
    let file = new_file("file-1", data.clone(), "ab", "image/png", "question 1.png");
    let PutFileOutcome::Created(stored) = store.put_file(&file).await.unwrap() else {
        panic!("a new file is created");
    };
    assert_eq!(stored.id.as_str(), "file-1");
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(stored.name.as_deref(), Some("question 1.png"));
    assert_eq!(stored.created_at, t(1_000));
    assert_eq!(store.file(&file.id).await.unwrap(), Some(stored.clone()));

    let mut read = Vec::new();
    let mut offset = 0u64;
    while offset < stored.size {
        let chunk = store
            .read_file_range(&file.id, offset, CHUNK)
            .await
            .unwrap()
            .expect("the file exists");
        assert!(!chunk.is_empty() && chunk.len() <= CHUNK as usize);
        offset += chunk.len() as u64;
        read.extend_from_slice(&chunk);
    }
    assert_eq!(read.len(), data.len());
    assert!(read == data, "the bytes read back differ");

    // A range in the middle, one across the end, one past it.
    let middle = store
        .read_file_range(&file.id, 300_000, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(middle, data[300_000..300_010]);
    let tail = store
        .read_file_range(&file.id, stored.size - 3, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tail, data[data.len() - 3..]);
    let past = store
        .read_file_range(&file.id, stored.size + 10, 100)
        .await
        .unwrap()
        .unwrap();
    assert!(past.is_empty());
    let far = store
        .read_file_range(&file.id, u64::MAX - 1, 100)
        .await
        .unwrap()
        .unwrap();
    assert!(far.is_empty());

    let unknown = FileId::parse("no-such-file").unwrap();
    assert_eq!(store.file(&unknown).await.unwrap(), None);
    assert_eq!(
        store.read_file_range(&unknown, 0, CHUNK).await.unwrap(),
        None
    );
}

async fn identical_content_is_stored_once(store: &SqlStore) {
    let data = noise(4096, 7);
    let first = store
        .put_file(&new_file("first", data.clone(), "c0", "image/png", "a.png"))
        .await
        .unwrap();
    assert!(matches!(first, PutFileOutcome::Created(_)));

    // The same bytes and type under another name: the first record.
    let again = store
        .put_file(&new_file(
            "second",
            data.clone(),
            "c0",
            "image/png",
            "b.png",
        ))
        .await
        .unwrap();
    let PutFileOutcome::Existing(existing) = again else {
        panic!("identical content returns the stored file: {again:?}");
    };
    assert_eq!(&existing, first.file());
    assert_eq!(existing.name.as_deref(), Some("a.png"));
    assert_eq!(
        store.file(&FileId::parse("second").unwrap()).await.unwrap(),
        None
    );

    // Another content type, or other bytes, is another file.
    let other_type = store
        .put_file(&new_file(
            "third",
            data.clone(),
            "c0",
            "image/jpeg",
            "a.jpg",
        ))
        .await
        .unwrap();
    assert!(matches!(other_type, PutFileOutcome::Created(_)));
    let other_bytes = store
        .put_file(&new_file(
            "fourth",
            noise(4096, 8),
            "d1",
            "image/png",
            "a.png",
        ))
        .await
        .unwrap();
    assert!(matches!(other_bytes, PutFileOutcome::Created(_)));
}

async fn racing_identical_uploads_end_on_one_row(store: &SqlStore) {
    let data = noise(128 * 1024, 9);
    let uploads: Vec<_> = (0..4)
        .map(|n| {
            let store = store.clone();
            let file = new_file(
                &format!("racer-{n}"),
                data.clone(),
                "e2",
                "application/pdf",
                "x",
            );
            tokio::spawn(async move { store.put_file(&file).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for upload in uploads {
        outcomes.push(upload.await.unwrap().unwrap());
    }
    let ids: Vec<&str> = outcomes
        .iter()
        .map(|outcome| outcome.file().id.as_str())
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] == pair[1]), "{ids:?}");
    let created = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, PutFileOutcome::Created(_)))
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
}

async fn an_empty_file_is_a_file(store: &SqlStore) {
    let file = new_file("empty", Vec::new(), "f3", "text/plain", "empty.txt");
    let stored = store.put_file(&file).await.unwrap();
    assert_eq!(stored.file().size, 0);
    assert_eq!(
        store.read_file_range(&file.id, 0, CHUNK).await.unwrap(),
        Some(Vec::new())
    );
}
