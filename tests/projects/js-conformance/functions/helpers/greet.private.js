// A private function: not reachable by URL (404), loadable through Runtime.getFunctions().
exports.greet = (name) => `Hello, ${name}!`;
exports.handler = (context, event, callback) => callback(null, 'private handler ran');
