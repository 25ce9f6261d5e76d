// A public asset through Runtime.getAssets(): the contract lists every asset; twilio-run only private ones.
exports.handler = (context, event, callback) => callback(null, Runtime.getAssets()['/my-file.txt'].open());
