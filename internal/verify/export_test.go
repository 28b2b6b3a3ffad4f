package verify

// FetchBytes is fetchBytes for the window test's allowance, which the
// broker's log turns into batches.
const FetchBytes = fetchBytes
