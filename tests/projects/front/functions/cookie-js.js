// Sets cookies as the test says: `attr` values through setCookie, or `raw` Set-Cookie header lines.
const asList = (value) => (value === undefined ? [] : [].concat(value));

exports.handler = (context, event, callback) => {
  const response = new Twilio.Response();
  for (const line of asList(event.raw)) {
    response.appendHeader('Set-Cookie', line);
  }
  if (event.attr !== undefined) {
    response.setCookie('sid', 'js', asList(event.attr));
  }
  response.setBody('cookies set');
  return callback(null, response);
};
