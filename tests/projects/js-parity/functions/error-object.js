exports.handler = (context, event, callback) => callback({ code: 20404, detail: 'not found' });
