// Package testenv gives tests the services they run against, with one
// policy for what happens when a service cannot be provided.
//
// [Postgres] starts a throwaway PostgreSQL server (internal/pgserver) and
// [Kafka] an in-process mock Kafka cluster (internal/mockkafka); both take a
// testing.TB and register their own cleanup, so a test never leaks a
// server or a cluster. [Context] gives a test a bounded context, and
// [Eventually] waits for a condition by polling with a deadline, which is
// how tests synchronise with asynchronous code instead of sleeping.
// [BuildIngest] builds the ingest command once per test binary, for the
// tests that run it as a child process, and [StartProcess] runs it beside
// the test: stopped with SIGTERM under a deadline, killed as a crash, and
// never left running after the test.
//
// # Skip or fail
//
// When the PostgreSQL server binaries are not installed, a developer's
// `go test` skips the test with the install command in the message. In CI
// (CI=true, or INGEST_REQUIRE_SERVICES=1 anywhere) the same test fails:
// a CI run must never go green by skipping its integration tests. See
// [RequireServices].
package testenv
