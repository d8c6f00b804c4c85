// Reloads the month overview every 10 s while a push runs; the server leaves this script out
// once the month has nothing in flight.
setTimeout(function () { window.location.reload(); }, 10000);
