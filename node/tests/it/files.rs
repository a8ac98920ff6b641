//! Files: multipart uploads by the admin server, streamed downloads by the
//! admin server, candidates and proctors, against a real node.

use rand::RngCore;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::{API_KEY, Backend, TestApp, ok_json, plan, problem};

crate::on_both_backends!(
    files_round_trip_streamed_with_cache_headers,
    files_with_identical_content_are_stored_once,
    files_refuse_malformed_uploads,
    files_need_credentials,
    files_are_readable_with_candidate_and_proctor_tokens,
);

/// More than two of the server's 256 KiB read chunks, and not a multiple.
const LARGE: usize = 600 * 1024 + 123;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn file_form(bytes: Vec<u8>, name: &str, content_type: &str) -> Form {
    let part = Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(content_type)
        .expect("a valid content type");
    Form::new().part("file", part)
}

async fn upload(app: &TestApp, form: Form) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/files"))
        .header("X-Api-Key", API_KEY)
        .multipart(form)
        .send()
        .await
        .expect("request")
}

/// Sends a hand-made multipart body (for what reqwest would not send).
async fn upload_raw(app: &TestApp, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/files"))
        .header("X-Api-Key", API_KEY)
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .expect("request")
}

fn raw_part(part_headers: &str, content: &[u8]) -> Vec<u8> {
    let mut body = format!("--XyZ\r\n{part_headers}\r\n\r\n").into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    body
}

async fn created(response: reqwest::Response) -> (Value, Option<String>) {
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    (response.json().await.expect("json body"), location)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("a text header")
}

async fn files_round_trip_streamed_with_cache_headers(app: &TestApp) {
    let bytes = random_bytes(LARGE);
    let digest = sha256_hex(&bytes);
    let (stored, location) =
        created(upload(app, file_form(bytes.clone(), "문항 1.png", "image/PNG")).await).await;
    let id = stored["id"].as_str().expect("an id").to_string();
    assert!(
        id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
        "{id}"
    );
    assert_eq!(stored["sha256"], digest.as_str());
    assert_eq!(stored["size"], LARGE);
    assert_eq!(stored["content_type"], "image/png");
    assert_eq!(stored["name"], "문항 1.png");
    assert_eq!(location.as_deref(), Some(&*format!("/api/v1/files/{id}")));

    let download = app.admin_get(&format!("/api/v1/files/{id}")).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(header(&download, "content-type"), "image/png");
    assert_eq!(header(&download, "content-length"), LARGE.to_string());
    let etag = format!("\"{digest}\"");
    assert_eq!(header(&download, "etag"), etag);
    assert_eq!(header(&download, "cache-control"), "private, max-age=86400");
    assert_eq!(header(&download, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(&download, "content-disposition"),
        "inline; filename*=UTF-8''%EB%AC%B8%ED%95%AD%201.png"
    );
    let downloaded = download.bytes().await.expect("the body");
    assert_eq!(downloaded.len(), LARGE);
    assert!(downloaded == bytes, "the downloaded bytes differ");
    assert_eq!(sha256_hex(&downloaded), digest);

    // The client's copy is current: 304 without a body.
    let not_modified = app
        .http
        .get(app.url(&format!("/api/v1/files/{id}")))
        .header("X-Api-Key", API_KEY)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&not_modified, "etag"), etag);
    assert_eq!(
        header(&not_modified, "cache-control"),
        "private, max-age=86400"
    );
    assert!(not_modified.bytes().await.expect("body").is_empty());
    // Another version's tag is not a match.
    let stale = app
        .http
        .get(app.url(&format!("/api/v1/files/{id}")))
        .header("X-Api-Key", API_KEY)
        .header("If-None-Match", "\"0000\", W/\"1111\"")
        .send()
        .await
        .expect("request");
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(stale.bytes().await.expect("body").len(), LARGE);

    // Without a filename or content type: no name, application/octet-stream.
    let bare = Form::new().part("file", Part::bytes(b"plain bytes".to_vec()));
    let (bare, _) = created(upload(app, bare).await).await;
    assert_eq!(bare["content_type"], "application/octet-stream");
    assert_eq!(bare["name"], Value::Null);
    let download = app
        .admin_get(&format!("/api/v1/files/{}", bare["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        header(&download, "content-type"),
        "application/octet-stream"
    );
    assert!(download.headers().get("content-disposition").is_none());
    assert_eq!(&download.bytes().await.unwrap()[..], b"plain bytes");

    // Files are in the database: every node serves them.
    let store = app.store().await;
    let file_id = invigil_actors::domain::ids::FileId::parse(id).unwrap();
    let record = invigil_actors::ports::FileStore::file(&store, &file_id)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(record.sha256, digest);
    store.close().await;
}

async fn files_with_identical_content_are_stored_once(app: &TestApp) {
    let bytes = random_bytes(70 * 1024);
    let (first, _) = created(
        upload(
            app,
            file_form(bytes.clone(), "first.pdf", "application/pdf"),
        )
        .await,
    )
    .await;
    let again = upload(
        app,
        file_form(bytes.clone(), "second.pdf", "application/pdf"),
    )
    .await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "identical content is not stored twice"
    );
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first, "the first upload's record, name included");

    // The same bytes as another type are another file.
    let (other, _) = created(
        upload(
            app,
            file_form(bytes, "first.bin", "application/octet-stream"),
        )
        .await,
    )
    .await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(other["sha256"], first["sha256"]);
}

async fn files_refuse_malformed_uploads(app: &TestApp) {
    // Not multipart at all.
    let json_body = app
        .http
        .post(app.url("/api/v1/files"))
        .header("X-Api-Key", API_KEY)
        .json(&json!({"file": "no"}))
        .send()
        .await
        .unwrap();
    problem(json_body, StatusCode::BAD_REQUEST, "not_multipart").await;
    let no_type = app
        .http
        .post(app.url("/api/v1/files"))
        .header("X-Api-Key", API_KEY)
        .body("bytes")
        .send()
        .await
        .unwrap();
    problem(no_type, StatusCode::BAD_REQUEST, "not_multipart").await;

    // Multipart without a usable boundary, or with a body that does not follow it.
    let body = raw_part("Content-Disposition: form-data; name=\"file\"", b"x");
    for content_type in [
        "multipart/form-data",
        "multipart/form-data; boundary=",
        &format!("multipart/form-data; boundary={}", "b".repeat(71)),
    ] {
        problem(
            upload_raw(app, content_type, body.clone()).await,
            StatusCode::BAD_REQUEST,
            "invalid_boundary",
        )
        .await;
    }
    problem(
        upload_raw(app, "multipart/form-data; boundary=other", body.clone()).await,
        StatusCode::BAD_REQUEST,
        "malformed_multipart",
    )
    .await;
    problem(
        upload_raw(
            app,
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\ncut off".to_vec(),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed_multipart",
    )
    .await;

    // No `file` part; another part; two `file` parts.
    problem(
        upload_raw(
            app,
            "multipart/form-data; boundary=XyZ",
            b"--XyZ--\r\n".to_vec(),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "missing_file",
    )
    .await;
    let other = Form::new().part("upload", Part::bytes(b"x".to_vec()).file_name("x.txt"));
    let body = problem(
        upload(app, other).await,
        StatusCode::BAD_REQUEST,
        "unexpected_part",
    )
    .await;
    assert_eq!(body["field"], "upload");
    let twice = Form::new()
        .part("file", Part::bytes(b"a".to_vec()))
        .part("file", Part::bytes(b"b".to_vec()));
    problem(
        upload(app, twice).await,
        StatusCode::BAD_REQUEST,
        "duplicate_part",
    )
    .await;

    // A content type that is not one; a name too long to keep.
    let body = raw_part(
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image",
        b"png",
    );
    let refused = problem(
        upload_raw(app, "multipart/form-data; boundary=XyZ", body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_content_type",
    )
    .await;
    assert_eq!(refused["field"], "file.content_type");
    let long_name = format!("{}.png", "문".repeat(100));
    let refused = problem(
        upload(app, file_form(b"png".to_vec(), &long_name, "image/png")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_file_name",
    )
    .await;
    assert_eq!(refused["field"], "file.filename");

    // Ids: malformed, unknown.
    problem(
        app.admin_get("/api/v1/files/not%20an%20id").await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    )
    .await;
    problem(
        app.admin_get("/api/v1/files/0190a8d2-0000-7000-8000-000000000000")
            .await,
        StatusCode::NOT_FOUND,
        "file_not_found",
    )
    .await;
}

async fn files_need_credentials(app: &TestApp) {
    let (stored, _) =
        created(upload(app, file_form(b"secret".to_vec(), "s.txt", "text/plain")).await).await;
    let path = format!("/api/v1/files/{}", stored["id"].as_str().unwrap());

    let anonymous_upload = app
        .http
        .post(app.url("/api/v1/files"))
        .multipart(file_form(b"x".to_vec(), "x.txt", "text/plain"))
        .send()
        .await
        .unwrap();
    problem(
        anonymous_upload,
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
    )
    .await;
    let wrong_key = app
        .http
        .post(app.url("/api/v1/files"))
        .header("X-Api-Key", "not-the-key-0123456789")
        .multipart(file_form(b"x".to_vec(), "x.txt", "text/plain"))
        .send()
        .await
        .unwrap();
    problem(wrong_key, StatusCode::UNAUTHORIZED, "invalid_api_key").await;

    let anonymous = app.http.get(app.url(&path)).send().await.unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED, "missing_credentials").await;
    let wrong_key = app
        .http
        .get(app.url(&path))
        .header("X-Api-Key", "not-the-key-0123456789")
        .send()
        .await
        .unwrap();
    problem(wrong_key, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    problem(
        app.bearer_get(&path, "not.a.token").await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

async fn files_are_readable_with_candidate_and_proctor_tokens(app: &TestApp) {
    let bytes = random_bytes(LARGE);
    let (stored, _) =
        created(upload(app, file_form(bytes.clone(), "q1.jpg", "image/jpeg")).await).await;
    let path = format!("/api/v1/files/{}", stored["id"].as_str().unwrap());

    ok_json(app.put_plan("p1", &plan("p1", 1, 2)).await).await;
    ok_json(app.command("p1", json!({"action": "open"})).await).await;
    let candidate = ok_json(app.login_candidate("p1", "R0001", "code-0001").await).await;
    let download = app
        .bearer_get(&path, candidate["token"].as_str().unwrap())
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(header(&download, "content-type"), "image/jpeg");
    assert!(download.bytes().await.unwrap() == bytes);

    let proctor = ok_json(app.login_proctor("p1-proctor-1", "password-1").await).await;
    let download = app
        .bearer_get(&path, proctor["token"].as_str().unwrap())
        .await;
    assert_eq!(download.status(), StatusCode::OK);
    assert!(download.bytes().await.unwrap() == bytes);

    // A token does not upload.
    let upload_with_token = app
        .http
        .post(app.url("/api/v1/files"))
        .bearer_auth(candidate["token"].as_str().unwrap())
        .multipart(file_form(b"x".to_vec(), "x.txt", "text/plain"))
        .send()
        .await
        .unwrap();
    problem(
        upload_with_token,
        StatusCode::UNAUTHORIZED,
        "missing_credentials",
    )
    .await;
}

/// The node's upload limit, lowered so the tests stay small.
const LIMIT: usize = 64 * 1024;

async fn files_over_the_limit_are_refused(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.files.max_bytes = LIMIT).await;

    // Exactly the limit fits.
    let exact = random_bytes(LIMIT);
    let (stored, _) =
        created(upload(&app, file_form(exact.clone(), "exact", "image/png")).await).await;
    assert_eq!(stored["size"], LIMIT);

    // One byte more is counted while the part streams in.
    let body = problem(
        upload(
            &app,
            file_form(random_bytes(LIMIT + 1), "over", "image/png"),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&LIMIT.to_string()),
        "{body}"
    );
    // A body declared far larger is refused before it is read.
    problem(
        upload(
            &app,
            file_form(random_bytes(4 * LIMIT), "far over", "image/png"),
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
    )
    .await;
    // Without a declared length too (chunked): the stream is cut at the limit.
    let chunks =
        futures::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(random_bytes(LIMIT / 4))));
    let streamed = Part::stream(reqwest::Body::wrap_stream(chunks)).file_name("chunked");
    problem(
        upload(&app, Form::new().part("file", streamed)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "file_too_large",
    )
    .await;

    // Nothing of the refused uploads was kept; the node still serves.
    let download = app
        .admin_get(&format!("/api/v1/files/{}", stored["id"].as_str().unwrap()))
        .await;
    assert!(download.bytes().await.unwrap() == exact);
    let store = app.store().await;
    let count_files = "SELECT COUNT(*) FROM files";
    let files: i64 = match store.backend_for_tests() {
        invigil_store::Backend::Postgres(pool) => {
            sqlx::query_scalar(count_files).fetch_one(pool).await
        }
        invigil_store::Backend::Sqlite(pool) => {
            sqlx::query_scalar(count_files).fetch_one(pool).await
        }
    }
    .unwrap();
    assert_eq!(files, 1);
    store.close().await;
    app.stop().await;
}

mod limited {
    #[tokio::test]
    async fn sqlite_files_over_the_limit_are_refused() {
        super::files_over_the_limit_are_refused(crate::support::Backend::Sqlite).await;
    }

    #[tokio::test]
    async fn postgres_files_over_the_limit_are_refused() {
        super::files_over_the_limit_are_refused(crate::support::Backend::Postgres).await;
    }
}
