exports.handler = (context, event, callback) => {
  const response = new Twilio.Response();
  response.setCookie('session', 'abc', ['Path=/', 'HttpOnly']).setCookie('theme', 'dark').setCookie('gone', '1')
    .removeCookie('gone').setBody({ ok: true }).appendHeader('Content-Type', 'application/json; charset=utf-8');
  return callback(null, response);
};
