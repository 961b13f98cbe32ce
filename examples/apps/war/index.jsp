<%@ page contentType="text/plain; charset=UTF-8" %><%
    String instance = System.getenv("CAAS_INSTANCE");
    if (instance == null) instance = "unknown";
%>war app works: <%= instance %> (JSP compiled at run time, 6*7=<%= 6 * 7 %>, <%= application.getServerInfo() %>, Java <%= System.getProperty("java.version") %>)
