// The "Runtime" fragment of the Global classes section, verbatim inside a handler that replies
// with the text of assets/my-file.txt.
exports.handler = (context, event, callback) => {
const text = Runtime.getAssets()["/my-file.txt"].open();
console.log("Your file contents: " + text);
  return callback(null, text);
};
