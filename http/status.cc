#include "http/status.h"

namespace ringproxy {

std::string trace_response(std::string_view request_line, std::span<const HeaderView> headers, bool close) {
  std::string body(request_line);
  body += "\r\n";
  for (const HeaderView& h : headers) {
    if (iequals(h.name, "authorization") || iequals(h.name, "proxy-authorization") || iequals(h.name, "cookie")) {
      continue;
    }
    body.append(h.name);
    body += ": ";
    body.append(h.value);
    body += "\r\n";
  }
  body += "\r\n";
  std::string out = "HTTP/1.1 200 OK\r\nContent-Type: message/http\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
  }
}

std::string canned_response(int status, std::string_view body_text, bool close, bool head) {
  std::string body(body_text);
  body.push_back('\n');
  std::string out = "HTTP/1.1 " + std::to_string(status) + " ";
  out.append(reason_phrase(status));
  out += "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head) out += body;
  return out;
}
}  // namespace ringproxy
