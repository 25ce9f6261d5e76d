// A private asset through Runtime.getAssets() (twilio-run lists only private ones; the contract lists all).
exports.handler = (context, event, callback) => callback(null, Runtime.getAssets()['/secret.txt'].open());
