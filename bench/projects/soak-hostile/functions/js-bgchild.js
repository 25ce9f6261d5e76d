// Soak: backgrounds a grandchild through a shell; the token in its argv lets the soak look for it afterwards.
const { exec } = require('child_process');

exports.handler = (context, event, callback) => {
  const token = String(event.token || '').replace(/[^A-Za-z0-9-]/g, '');
  exec(`("${process.execPath}" -e "setTimeout(() => {}, 30000)" ${token}) &`);
  callback(null, 'child started');
};
