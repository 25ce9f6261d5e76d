exports.handler = (context, event, callback) => callback(null, { runtime: 'node', version: process.versions.node });
